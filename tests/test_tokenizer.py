"""Our byte-level BPE, trained on a small real English corpus: round trip, digest, compression on text vs Python."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from transfer_laws.lightning_modules import (
    TokenizerInfo,
    build_corpus,
    load_tokenizer,
    tokenizer_digest,
    tokens_per_char,
    train_tokenizer,
)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("corpora")
    build_corpus("text", root / "text", max_bytes=400_000)
    build_corpus("python", root / "python", max_bytes=300_000)
    return {"text": root / "text", "python": root / "python"}


@pytest.fixture(scope="module")
def info(corpora: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> TokenizerInfo:
    return train_tokenizer(corpora["text"], tmp_path_factory.mktemp("tok") / "bpe", vocab_size=1024)


def test_saved_folder_and_digest(info: TokenizerInfo) -> None:
    assert (info.path / "tokenizer.json").is_file() and (info.path / "tokenizer_config.json").is_file()
    assert info.digest == hashlib.sha256((info.path / "tokenizer.json").read_bytes()).hexdigest()
    assert info.digest == tokenizer_digest(info.path)
    assert info.vocab_size == 1024
    tok = load_tokenizer(info.path)
    assert len(tok) == 1024
    assert tok.eos_token == tok.bos_token == tok.pad_token == "<|endoftext|>"


def test_round_trip_code_with_unicode(info: TokenizerInfo) -> None:
    tok = load_tokenizer(info.path)
    code = 'def grüße(name: str) -> str:\n\treturn f"こんにちは, {name} — π≈3.14 🐍"\r\n\n    # tabs\tand  spaces  \n'
    ids = tok(code, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == code
    assert max(ids) < 1024
    assert tok.decode(tok("a<|endoftext|>b", add_special_tokens=False)["input_ids"], skip_special_tokens=True) == "ab"


def test_tokens_per_char_text_and_python(info: TokenizerInfo, corpora: dict[str, Path]) -> None:
    tok = load_tokenizer(info.path)
    text = tokens_per_char(tok, corpora["text"])
    python = tokens_per_char(tok, corpora["python"])
    print(json.dumps({"tokens_per_char": {"text": round(text, 4), "python": round(python, 4)}}))
    assert 0.2 < text < 0.6 and 0.2 < python < 1.0
    assert python > text  # a BPE fitted to English compresses Python less well (the paper's handicap)


def test_same_corpus_same_digest_and_bad_input(info: TokenizerInfo, corpora: dict[str, Path], tmp_path: Path) -> None:
    again = train_tokenizer(corpora["text"], tmp_path / "again", vocab_size=1024)
    assert again.digest == info.digest  # deterministic training: runs of a law can check the digest
    other = train_tokenizer(corpora["python"], tmp_path / "py", vocab_size=1024)
    assert other.digest != info.digest
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(corpora["text"], tmp_path / "bad", vocab_size=100)
    with pytest.raises(FileNotFoundError, match="build_corpus"):
        train_tokenizer(tmp_path, tmp_path / "bad2")
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_tokenizer(tmp_path)


def test_processes_building_the_workspace_tokenizer_at_once_share_one_whole_folder(tmp_path: Path) -> None:
    # The ranks of one torchrun job all find the tokenizer missing: each trains in its own folder, one lands whole.
    import subprocess
    import sys

    probe = ("import sys; from pathlib import Path; from transfer_laws.plugin.recipes import workspace; "
             "print(workspace.tokenizer_dir('text', 300, 200_000, Path(sys.argv[1])))")
    home = tmp_path / "home"
    workspace_corpus = [sys.executable, "-c", "import sys; from pathlib import Path; "
                        "from transfer_laws.plugin.recipes import workspace; "
                        "workspace.corpus_dir('text', 200_000, Path(sys.argv[1]))", str(home)]
    subprocess.run(workspace_corpus, check=True, timeout=300)  # the corpus first: its own race is tested elsewhere
    procs = [subprocess.Popen([sys.executable, "-c", probe, str(home)], stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    outs = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert len(set(outs)) == 1
    folder = Path(outs[0])
    assert load_tokenizer(folder).encode("def f(x):\n    return x") and folder.parent.is_dir()
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no staging folder left behind
