"""build_corpus on real local sources: Debian prose, the stdlib, user folders, S3 over HTTP (moto) and datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from transfer_laws.lightning_modules import CorpusError, CorpusManifest, build_corpus
from transfer_laws.lightning_modules._dedup import minhash

TEXT_BYTES = 400_000


def _lines(folder: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (folder / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="session")
def text_corpus(tmp_path_factory: pytest.TempPathFactory) -> CorpusManifest:
    return build_corpus("text", tmp_path_factory.mktemp("text") / "c", max_bytes=TEXT_BYTES)


def test_text_manifest_records_sources_sizes_and_digests(text_corpus: CorpusManifest) -> None:
    folder = text_corpus.path
    assert folder is not None
    on_disk = json.loads((folder / "manifest.json").read_text())
    assert on_disk["digest"] == text_corpus.digest
    names = {s["name"] for s in text_corpus.sources}
    # exactly the small packages: the large English sources (kind "english") never slow the demo's "text" build
    assert names == {"bible-kjv", "fortunes", "jargon-text", "dict-devil"}
    for source in text_corpus.sources:
        assert source["version"], source  # Debian package versions are known
        assert len(source["digest"]) == 64
    train, test = _lines(folder, "train"), _lines(folder, "test")
    assert text_corpus.train.docs == len(train) and text_corpus.test.docs == len(test)
    assert text_corpus.train.chars == sum(len(d["text"]) for d in train)
    assert text_corpus.train.bytes + text_corpus.test.bytes <= TEXT_BYTES + 10_000  # capped at ~max_bytes
    assert sum(s["kept_docs"] for s in text_corpus.sources) == len(train) + len(test)
    assert 0.01 < len(test) / (len(train) + len(test)) < 0.06  # ~3% by document


def test_no_document_in_both_splits(text_corpus: CorpusManifest) -> None:
    assert text_corpus.path is not None
    train, test = _lines(text_corpus.path, "train"), _lines(text_corpus.path, "test")
    assert not {d["doc_id"] for d in train} & {d["doc_id"] for d in test}
    assert not {d["text"] for d in train} & {d["text"] for d in test}


def test_deterministic_and_reused(text_corpus: CorpusManifest, tmp_path: Path) -> None:
    assert text_corpus.path is not None
    again = build_corpus("text", tmp_path / "again", max_bytes=TEXT_BYTES)
    assert again.digest == text_corpus.digest
    assert (tmp_path / "again" / "train.jsonl").read_bytes() == (text_corpus.path / "train.jsonl").read_bytes()
    before = (tmp_path / "again" / "train.jsonl").stat().st_mtime_ns
    reused = build_corpus("text", tmp_path / "again", max_bytes=TEXT_BYTES)
    assert reused.digest == again.digest
    assert (tmp_path / "again" / "train.jsonl").stat().st_mtime_ns == before  # not rewritten
    other_seed = build_corpus("text", tmp_path / "seed1", max_bytes=TEXT_BYTES, seed=1)
    assert other_seed.digest != text_corpus.digest
    with pytest.raises(CorpusError, match="already holds a corpus"):
        build_corpus("text", tmp_path / "again", max_bytes=TEXT_BYTES // 2)


def test_python_corpus_is_stdlib_source(tmp_path: Path) -> None:
    manifest = build_corpus("python", tmp_path / "py", max_bytes=300_000)
    (source,) = manifest.sources
    assert source["name"] == "python-stdlib" and source["version"].count(".") == 2
    docs = _lines(tmp_path / "py", "train")
    assert all(d["doc_id"].endswith(".py") and "/test/" not in d["doc_id"] for d in docs)
    assert sum("def " in d["text"] for d in docs) > len(docs) // 2


def _word_docs(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(500)]
    return [" ".join(rng.choice(vocab, size=300)) for _ in range(n)]


def test_bad_files_skipped_and_counted_duplicates_removed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    docs = _word_docs(30, seed=1)
    for i, text in enumerate(docs):
        (src / f"doc{i:02d}.txt").write_text(text)
        words = text.split()
        words[150] = "changed"  # a near duplicate: one word of 300 differs
        (src / f"near{i:02d}.txt").write_text(" ".join(words))
    (src / "copy.txt").write_text(docs[0] + "\r\n")  # an exact duplicate once cleaned
    (src / "empty.txt").write_text("  \n\n")
    (src / "binary.bin").write_bytes(bytes(range(256)))
    (src / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    manifest = build_corpus(str(src), tmp_path / "out", test_fraction=0.2)
    assert manifest.skipped_empty == 1
    assert manifest.skipped_undecodable == 2
    assert manifest.duplicates_exact == 1
    assert manifest.near_duplicates > 0
    train, test = _lines(tmp_path / "out", "train"), _lines(tmp_path / "out", "test")
    assert len(train) + len(test) + manifest.near_duplicates == 60
    test_sigs = [minhash(d["text"]) for d in test]
    for doc in train:  # no train document is a near duplicate of a test document
        sig = minhash(doc["text"])
        assert max(float(np.mean(sig == t)) for t in test_sigs) < 0.8


def test_missing_sources_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no files found"):
        build_corpus(str(tmp_path / "empty"), tmp_path / "out")
    with pytest.raises(CorpusError, match="do not exist"):
        build_corpus("files", tmp_path / "out2", files=[tmp_path / "nope.txt"])
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "a.txt").write_text("")
    with pytest.raises(CorpusError, match="1 empty"):
        build_corpus(str(tmp_path / "blank"), tmp_path / "out3")
    assert not (tmp_path / "out3" / "manifest.json").exists()


def test_s3_source_over_http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", f"http://{host}:{port}")
        for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                            ("AWS_DEFAULT_REGION", "us-east-1")):
            monkeypatch.setenv(name, value)
        client = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
        client.create_bucket(Bucket="corpus")
        docs = _word_docs(12, seed=2)
        for i, text in enumerate(docs):
            client.put_object(Bucket="corpus", Key=f"texts/{i:02d}.txt", Body=text.encode())
        client.put_object(Bucket="corpus", Key="other/skip.txt", Body=b"outside the prefix")
        manifest = build_corpus("s3://corpus/texts/", tmp_path / "s3", test_fraction=0.25)
        with pytest.raises(CorpusError, match="no objects"):
            build_corpus("s3://corpus/missing/", tmp_path / "s3b")
    finally:
        server.stop()
    (source,) = manifest.sources
    assert source["name"] == "s3" and source["files"] == 12
    got = _lines(tmp_path / "s3", "train") + _lines(tmp_path / "s3", "test")
    assert sorted(d["text"] for d in got) == sorted(docs)
    assert len(_lines(tmp_path / "s3", "test")) == 3


def test_datasets_source(tmp_path: Path) -> None:
    import datasets

    docs = _word_docs(10, seed=3)
    datasets.Dataset.from_dict({"text": [*docs, ""]}).save_to_disk(str(tmp_path / "ds"))
    manifest = build_corpus(str(tmp_path / "ds"), tmp_path / "out")
    assert manifest.sources[0]["name"] == "datasets" and manifest.skipped_empty == 1
    assert manifest.train.docs + manifest.test.docs == 10


def test_mix_is_half_text_half_code(tmp_path: Path) -> None:
    manifest = build_corpus("mix", tmp_path / "mix", max_bytes=400_000)
    docs = _lines(tmp_path / "mix", "train") + _lines(tmp_path / "mix", "test")
    code = sum(len(d["text"].encode()) for d in docs if d["source"] == "c-headers")
    text = sum(len(d["text"].encode()) for d in docs if d["source"] != "c-headers")
    assert 0.4 < code / (code + text) < 0.6
    assert manifest.capped_docs > 1_000  # the rest of /usr/include is listed, not read
    assert any(s["name"] == "c-headers" for s in manifest.sources)


def test_workspace_knows_every_builtin_corpus() -> None:
    """Built-in kinds get named workspace folders and law labels; anything else is a user source."""
    from transfer_laws.lightning_modules.corpora import BUILTIN_KINDS
    from transfer_laws.plugin.recipes import workspace

    assert set(workspace.BUILTIN_CORPORA) == set(BUILTIN_KINDS)
    assert workspace.corpus_label("english") == "english"
