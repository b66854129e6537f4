"""build_corpus: a cleaned, deduplicated corpus split by document into train.jsonl / test.jsonl plus a manifest.

Pipeline: list the sources' documents -> order them by a seeded hash of the document id -> in that order, read,
decode as UTF-8 (undecodable or binary files are skipped and counted), clean (newlines normalised, trailing spaces
stripped; empty documents skipped and counted) and drop exact duplicates, until ``max_bytes`` of text is kept
("mix": half text, half code) -> the first ``test_fraction`` of the kept documents, in the same order, is
the test split -> drop training documents that are near duplicates (MinHash Jaccard >= 0.8) of a test document.
A document is never in both splits. The same arguments give byte-identical files, and a finished folder is reused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transfer_laws.lightning_modules import _english, _sources
from transfer_laws.lightning_modules._dedup import minhash, near_duplicates
from transfer_laws.lightning_modules._sources import CorpusError, RawDoc, SourceInfo

JsonDict = dict[str, Any]
"""A manifest's build arguments and sources: JSON values of many kinds."""
BUILTIN_KINDS = ("text", "english", "python", "code", "mix", "all")
MANIFEST = "manifest.json"
TRAIN_FILE = "train.jsonl"
TEST_FILE = "test.jsonl"


@dataclass
class SplitStats:
    """Size of one split: documents, UTF-8 bytes and characters."""

    docs: int = 0
    bytes: int = 0
    chars: int = 0


@dataclass
class CorpusManifest:
    """What a corpus folder holds and where it came from (written as manifest.json next to the splits)."""

    name: str
    """The corpus kind or the user's source, as passed to build_corpus."""
    args: JsonDict
    """The build arguments; a folder is reused only when they match."""
    sources: list[JsonDict]
    """Every source: name, package version where known, origin, files, raw bytes, kept docs and content digest."""
    skipped_empty: int
    """Files/documents that were empty after cleaning."""
    skipped_undecodable: int
    """Files that were not UTF-8 text (binary or another encoding)."""
    duplicates_exact: int
    """Documents dropped because an identical one was already kept."""
    near_duplicates: int
    """Training documents dropped as near duplicates of a test document."""
    capped_docs: int
    """Documents left out by ``max_bytes``."""
    train: SplitStats = field(default_factory=SplitStats)
    """Size of train.jsonl."""
    test: SplitStats = field(default_factory=SplitStats)
    """Size of test.jsonl."""
    digest: str = ""
    """sha256 over train.jsonl then test.jsonl: the corpus' identity."""
    path: Path | None = None
    """The folder (not written to the manifest file)."""

    def to_json(self) -> JsonDict:
        """The manifest as JSON-ready data (without ``path``)."""
        data = asdict(self)
        data.pop("path")
        return data

    @classmethod
    def load(cls, folder: Path) -> CorpusManifest:
        """Read ``folder/manifest.json``."""
        data = json.loads((Path(folder) / MANIFEST).read_text())
        data["train"] = SplitStats(**data["train"])
        data["test"] = SplitStats(**data["test"])
        return cls(**data, path=Path(folder))


def _raw_docs(kind: str, files: list[Path] | None, infos: list[SourceInfo]) -> Iterator[tuple[str, RawDoc]]:
    """(group, doc) pairs; ``mix`` has two groups (text and code) capped separately at half the budget."""
    if files is not None:
        yield from (("all", d) for d in _sources.local_docs(None, files, infos))
    elif kind == "text":
        yield from (("all", d) for d in _sources.prose_docs(infos))
    elif kind == "english":
        yield from (("all", d) for d in _sources.prose_docs(infos))
        yield from (("all", d) for d in _english.english_docs(infos))
    elif kind == "python":
        yield from (("all", d) for d in _sources.python_docs(infos))
    elif kind == "code":
        yield from (("all", d) for d in _sources.code_docs(infos))
    elif kind == "mix":
        yield from (("text", d) for d in _sources.prose_docs(infos))
        yield from (("code", d) for d in _sources.code_docs(infos))
    elif kind == "all":
        for reader in (_sources.prose_docs, _english.english_docs, _sources.python_docs,
                       _sources.package_python_docs, _sources.code_docs):
            yield from (("all", d) for d in reader(infos))
    elif kind.startswith("s3://"):
        yield from (("all", d) for d in _sources.s3_docs(kind, infos))
    elif _sources.is_dataset_dir(kind):
        yield from (("all", d) for d in _sources.dataset_docs(kind, infos))
    else:
        yield from (("all", d) for d in _sources.local_docs(kind, None, infos))


def clean(data: bytes) -> str | None:
    """Decoded, cleaned text; None for bytes that are not UTF-8 text (including any NUL byte: binary)."""
    if b"\x00" in data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def _rank(seed: int, doc_id: str) -> str:
    return hashlib.sha256(f"{seed}:{doc_id}".encode()).hexdigest()


def _args(kind: str, max_bytes: int | None, test_fraction: float, seed: int, files: list[Path] | None) -> dict:
    return {"kind": kind, "max_bytes": max_bytes, "test_fraction": test_fraction, "seed": seed,
            "files": None if files is None else [str(Path(f).resolve()) for f in files]}


def build_corpus(kind: str, out_dir: Path, *, max_bytes: int | None = None, test_fraction: float = 0.03,
                 seed: int = 0, files: list[Path] | None = None) -> CorpusManifest:
    """Build (or reuse) a corpus folder with train.jsonl, test.jsonl and manifest.json.

    ``kind`` is a built-in corpus or a user source. Built-in: "text": English prose from the small Debian packages
    (~10 MB: the KJV Bible, fortunes, the Jargon File, the Devil's Dictionary; the demo's source); "english": "text"
    plus GCIDE, the Linux kernel's prose documentation and Shakespeare (~60 MB); "python": the interpreter's
    stdlib; "code": C headers; "mix": half "text", half "code" by bytes; "all": every built-in source, including
    installed packages' Python sources (~450 MB: enough for D_F = 1e8 tokens). User: a folder or glob of text
    files, ``s3://bucket/prefix``, or a folder written by ``datasets``' ``save_to_disk``. ``files`` overrides
    ``kind`` with an explicit list. Each jsonl line is ``{"text", "source", "doc_id"}``.
    """
    out_dir = Path(out_dir)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if max_bytes is not None and max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    args = _args(kind, max_bytes, test_fraction, seed, files)
    if (out_dir / MANIFEST).is_file():
        existing = CorpusManifest.load(out_dir)
        if existing.args == args:
            return existing
        raise CorpusError(f"{out_dir} already holds a corpus built with {existing.args}; choose another folder "
                          f"or delete it to rebuild with {args}")

    infos: list[SourceInfo] = []
    groups: dict[str, list[tuple[str, RawDoc]]] = {}
    for group, doc in _raw_docs(kind, files, infos):
        groups.setdefault(group, []).append((_rank(seed, doc.doc_id), doc))

    # Visit documents in seeded-rank order and stop at the byte cap: files past the cap are never read.
    skipped_empty = skipped_undecodable = duplicates = capped = 0
    seen: set[bytes] = set()
    kept: list[tuple[str, RawDoc, str]] = []
    group_budget = None if max_bytes is None or not groups else max_bytes // len(groups)
    for group in sorted(groups):
        ordered = sorted(groups[group], key=lambda item: item[0])
        used = 0
        for position, (rank, doc) in enumerate(ordered):
            if group_budget is not None and used >= group_budget:
                capped += len(ordered) - position
                break
            text = clean(doc.read())
            if text is None:
                skipped_undecodable += 1
                continue
            if not text.strip():
                skipped_empty += 1
                continue
            key = hashlib.sha256(text.encode()).digest()
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            kept.append((rank, doc, text))
            used += len(text.encode())
    if len(kept) < 2:
        what = kind if files is None else f"{len(files)} files"
        raise CorpusError(f"corpus {what!r} has {len(kept)} usable documents (skipped {skipped_empty} empty, "
                          f"{skipped_undecodable} undecodable, {duplicates} duplicates); need at least 2")
    kept.sort(key=lambda item: item[0])
    n_test = min(len(kept) - 1, max(1, math.ceil(len(kept) * test_fraction)))
    test, train = kept[:n_test], kept[n_test:]
    leaks = near_duplicates([minhash(t) for _, _, t in train], [minhash(t) for _, _, t in test])
    train = [item for i, item in enumerate(train) if i not in leaks]

    manifest = CorpusManifest(name=kind, args=args, sources=[], skipped_empty=skipped_empty,
                              skipped_undecodable=skipped_undecodable, duplicates_exact=duplicates,
                              near_duplicates=len(leaks), capped_docs=capped, path=out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus_hash = hashlib.sha256()
    per_source: dict[str, tuple[hashlib._Hash, int]] = {}
    for filename, items, stats in ((TRAIN_FILE, train, manifest.train), (TEST_FILE, test, manifest.test)):
        tmp = out_dir / f".{filename}.{os.getpid()}.tmp"  # per process: ranks of one job may build it at once
        with tmp.open("w", encoding="utf-8") as fh:
            for _, doc, text in items:
                line = json.dumps({"text": text, "source": doc.source, "doc_id": doc.doc_id}, ensure_ascii=False)
                fh.write(line + "\n")
                corpus_hash.update(line.encode() + b"\n")
                stats.docs += 1
                stats.bytes += len(text.encode())
                stats.chars += len(text)
                digest, count = per_source.get(doc.source, (hashlib.sha256(), 0))
                digest.update(doc.doc_id.encode() + b"\0" + text.encode() + b"\0")
                per_source[doc.source] = (digest, count + 1)
        os.replace(tmp, out_dir / filename)
    for info in infos:
        digest, count = per_source.get(info.name, (hashlib.sha256(), 0))
        manifest.sources.append({**asdict(info), "kept_docs": count, "digest": digest.hexdigest()})
    manifest.digest = corpus_hash.hexdigest()
    tmp = out_dir / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    os.replace(tmp, out_dir / MANIFEST)  # written last: its presence means the folder is complete
    return manifest
