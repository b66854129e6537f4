"""Readers for the corpus sources: Debian prose packages, Python's stdlib, C headers, and users' own data.

Each reader yields ``RawDoc`` objects (raw bytes plus a stable id) and describes itself with a ``SourceInfo``;
decoding, cleaning and deduplication happen later in ``corpora.py`` so every source is treated the same way.
"""

from __future__ import annotations

import glob
import gzip
import os
import re
import subprocess
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


class CorpusError(ValueError):
    """A corpus source is missing, empty or unreadable; the message names it and how to fix it."""


@dataclass
class RawDoc:
    """One document before decoding: its stable id, the source it came from and its raw bytes (or its file).

    A file-backed document is read only when the builder reaches it, so a capped corpus drawn from a large
    source (100 MB of C headers) reads only the files it keeps.
    """

    doc_id: str
    source: str
    data: bytes | None = None
    path: Path | None = None

    def read(self) -> bytes:
        """The raw bytes (read from ``path`` on demand)."""
        if self.data is not None:
            return self.data
        assert self.path is not None  # every reader sets one of the two
        return self.path.read_bytes()


@dataclass
class SourceInfo:
    """Provenance of one source: name, package version where known, and where it was read from."""

    name: str
    version: str | None
    origin: str
    files: int = 0
    raw_bytes: int = 0
    extra: dict[str, str] = field(default_factory=dict)


PROSE_PACKAGES = ("bible-kjv", "bible-kjv-text", "fortunes", "jargon-text", "dict-devil")
_APT_HINT = "install it with `apt-get install -y --no-install-recommends {pkgs}` (the project's .ci/setup does this)"
_DOC_BYTES = 4096  # prose is grouped into ~4 KB documents so the split is by document, not by line


def debian_version(package: str) -> str | None:
    """The installed version of a Debian package, or None where dpkg is unavailable or it is not installed."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True,
                             check=False, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _chunks(paragraphs: list[str], prefix: str, source: str) -> Iterator[RawDoc]:
    """Group paragraphs into documents of about ``_DOC_BYTES`` bytes."""
    buf: list[str] = []
    size = 0
    index = 0
    for para in paragraphs:
        buf.append(para)
        size += len(para) + 2
        if size >= _DOC_BYTES:
            yield RawDoc(f"{prefix}/{index:05d}", source, "\n\n".join(buf).encode("utf-8"))
            buf, size, index = [], 0, index + 1
    if buf:
        yield RawDoc(f"{prefix}/{index:05d}", source, "\n\n".join(buf).encode("utf-8"))


def _bible(infos: list[SourceInfo]) -> Iterator[RawDoc]:
    try:
        out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise CorpusError(f"the King James Bible (`bible` command) is unavailable: {exc}; "
                          + _APT_HINT.format(pkgs="bible-kjv bible-kjv-text")) from exc
    infos.append(SourceInfo("bible-kjv", debian_version("bible-kjv-text"), "bible -f Gen1:1-Rev22:21", 1, len(out)))
    chapters: dict[str, list[str]] = {}
    for line in out.decode("utf-8", errors="replace").splitlines():
        ref, _, verse = line.partition(" ")
        chapter = ref.split(":", 1)[0]  # "Ge1:1" -> chapter "Ge1": one document per chapter
        if verse.strip():
            chapters.setdefault(chapter, []).append(verse.strip())
    for chapter, verses in chapters.items():
        yield RawDoc(f"bible-kjv/{chapter}", "bible-kjv", " ".join(verses).encode("utf-8"))


def _fortunes(infos: list[SourceInfo]) -> Iterator[RawDoc]:
    folder = Path("/usr/share/games/fortunes")
    files = sorted(p for p in folder.glob("*") if p.is_file() and not p.suffix and "art" not in p.name) \
        if folder.is_dir() else []
    if not files:
        raise CorpusError(f"no fortune cookie files in {folder}; " + _APT_HINT.format(pkgs="fortunes"))
    info = SourceInfo("fortunes", debian_version("fortunes"), str(folder))
    infos.append(info)
    for path in files:
        raw = path.read_bytes()
        info.files += 1
        info.raw_bytes += len(raw)
        cookies = [c.strip() for c in raw.decode("utf-8", errors="replace").split("\n%\n") if c.strip()]
        yield from _chunks(cookies, f"fortunes/{path.name}", "fortunes")


def _gzip_text(path: Path, name: str, package: str, infos: list[SourceInfo]) -> str:
    if not path.is_file():
        raise CorpusError(f"{name} is missing ({path}); " + _APT_HINT.format(pkgs=package))
    raw = gzip.decompress(path.read_bytes())
    infos.append(SourceInfo(name, debian_version(package), str(path), 1, len(raw)))
    return raw.decode("utf-8", errors="replace")


def _jargon(infos: list[SourceInfo]) -> Iterator[RawDoc]:
    text = _gzip_text(Path("/usr/share/doc/jargon-text/jargon.txt.gz"), "jargon-text", "jargon-text", infos)
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    yield from _chunks(paragraphs, "jargon-text", "jargon-text")


def _devil(infos: list[SourceInfo]) -> Iterator[RawDoc]:
    text = _gzip_text(Path("/usr/share/dictd/devil.dict.dz"), "dict-devil", "dict-devil", infos)
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip() and not p.lstrip().startswith("00-")]
    yield from _chunks(paragraphs, "dict-devil", "dict-devil")


def prose_docs(infos: list[SourceInfo]) -> Iterator[RawDoc]:
    """English prose from the Debian packages in ``PROSE_PACKAGES``."""
    for reader in (_bible, _fortunes, _jargon, _devil):
        yield from reader(infos)


def _files_under(root: Path, patterns: tuple[str, ...], skip_dirs: tuple[str, ...], max_file: int) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if any(path.match(p) for p in patterns) and not path.is_symlink() and path.stat().st_size <= max_file:
                found.append(path)
    return found


def _file_docs(paths: list[Path], root: Path, source: str) -> Iterator[RawDoc]:
    for path in paths:
        yield RawDoc(f"{source}/{path.relative_to(root).as_posix()}", source, path=path)


def python_docs(infos: list[SourceInfo]) -> Iterator[RawDoc]:
    """The running interpreter's standard library, without its test suites (files <= 200 KB)."""
    import platform

    root = Path(sysconfig.get_paths()["stdlib"])
    paths = _files_under(root, ("*.py",), ("test", "tests", "idlelib", "site-packages", "__pycache__"), 200_000)
    if not paths:
        raise CorpusError(f"no Python sources under the interpreter's stdlib {root}")
    infos.append(SourceInfo("python-stdlib", platform.python_version(), "sysconfig stdlib", len(paths),
                            sum(p.stat().st_size for p in paths)))
    yield from _file_docs(paths, root, "python-stdlib")


def package_python_docs(infos: list[SourceInfo]) -> Iterator[RawDoc]:
    """Python sources of the packages installed for the running interpreter (site-packages), without test suites
    (files <= 200 KB). The source's version is a digest of the sorted ``name==version`` list of distributions."""
    import hashlib
    from importlib import metadata

    roots = sorted({Path(sysconfig.get_paths()[key]) for key in ("purelib", "platlib")})
    paths: list[tuple[Path, Path]] = []
    for root in roots:
        if root.is_dir():
            found = _files_under(root, ("*.py",), ("test", "tests", "testing", "__pycache__"), 200_000)
            paths.extend((root, p) for p in found)
    if not paths:
        raise CorpusError(f"no Python sources in site-packages ({', '.join(map(str, roots))})")
    dists = sorted({f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata['Name']})
    infos.append(SourceInfo("python-packages", hashlib.sha256("\n".join(dists).encode()).hexdigest()[:16],
                            "sysconfig purelib/platlib", len(paths), sum(p.stat().st_size for _, p in paths),
                            {"distributions": str(len(dists))}))
    for root, path in paths:
        yield RawDoc(f"python-packages/{path.relative_to(root).as_posix()}", "python-packages", path=path)


def code_docs(infos: list[SourceInfo]) -> Iterator[RawDoc]:
    """Non-Python code: C headers under /usr/include (the system's standard header location)."""
    root = Path("/usr/include")
    paths = _files_under(root, ("*.h",), (), 200_000) if root.is_dir() else []
    if not paths:
        raise CorpusError("no C headers under /usr/include; install them with `apt-get install -y libc6-dev`")
    infos.append(SourceInfo("c-headers", debian_version("libc6-dev"), str(root), len(paths),
                            sum(p.stat().st_size for p in paths)))
    yield from _file_docs(paths, root, "c-headers")


def local_docs(spec: str | None, files: list[Path] | None, infos: list[SourceInfo]) -> Iterator[RawDoc]:
    """A user's files: an explicit list, a folder (all files below it) or a glob pattern."""
    if files is not None:
        paths = [Path(f) for f in files]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise CorpusError(f"these corpus files do not exist: {', '.join(missing[:5])}")
        root = Path(os.path.commonpath([str(p.resolve().parent) for p in paths])) if paths else Path()
        paths = [p.resolve() for p in paths]
    elif spec is not None and Path(spec).is_dir():
        root = Path(spec).resolve()
        paths = sorted(p for p in root.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.parts))
    else:
        matched = sorted(Path(p).resolve() for p in glob.glob(str(spec), recursive=True))
        paths = [p for p in matched if p.is_file()]
        root = Path(os.path.commonpath([str(p.parent) for p in paths])) if paths else Path()
    if not paths:
        raise CorpusError(f"no files found for corpus source {spec or files!r} (a folder, a glob, or a list of files)")
    infos.append(SourceInfo("local", None, str(spec) if spec else "files", len(paths),
                            sum(p.stat().st_size for p in paths)))
    yield from _file_docs(paths, root, "local")


def s3_docs(uri: str, infos: list[SourceInfo]) -> Iterator[RawDoc]:
    """Every object under ``s3://bucket/prefix`` (endpoint from MLFLOW_S3_ENDPOINT_URL or AWS_ENDPOINT_URL)."""
    import boto3

    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
    client = boto3.client("s3", endpoint_url=endpoint)
    keys: list[str] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []) if not obj["Key"].endswith("/"))
    except Exception as exc:  # botocore raises many types; all mean the same to the user here
        raise CorpusError(f"cannot list {uri}: {exc}") from exc
    if not keys:
        raise CorpusError(f"no objects under {uri}")
    info = SourceInfo("s3", None, uri, len(keys))
    infos.append(info)
    for key in sorted(keys):
        data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        info.raw_bytes += len(data)
        yield RawDoc(f"s3/{key}", "s3", data)


def dataset_docs(path: str, infos: list[SourceInfo], text_column: str = "text") -> Iterator[RawDoc]:
    """A `datasets` dataset saved on disk (``save_to_disk``); one row = one document, column ``text``."""
    import datasets

    loaded = datasets.load_from_disk(path)
    if isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.concatenate_datasets([loaded[k] for k in sorted(loaded)])
    if text_column not in loaded.column_names:
        raise CorpusError(f"dataset {path} has no {text_column!r} column (columns: {loaded.column_names})")
    fingerprint = {"fingerprint": loaded._fingerprint}  # datasets' content identity
    infos.append(SourceInfo("datasets", datasets.__version__, path, len(loaded), 0, fingerprint))
    for i, text in enumerate(loaded[text_column]):
        yield RawDoc(f"datasets/{i:08d}", "datasets", (text or "").encode("utf-8"))


def is_dataset_dir(spec: str) -> bool:
    """True for a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""
    folder = Path(spec)
    return folder.is_dir() and ((folder / "dataset_info.json").is_file() or (folder / "dataset_dict.json").is_file()
                                or (folder / "state.json").is_file())
