"""The local workspace: corpora and tokenizers built once under TRANSFER_LAWS_HOME and reused by every run.

A law's runs must share one tokenizer (losses in nats/token are only comparable under the same tokenizer), so the
tokenizer is keyed by the corpus it was fitted on and its vocabulary size, as the paper fitted its BPE to English.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from transfer_laws.lightning_modules.tokenizer import train_tokenizer
from transfer_laws.registry.tracking import home_dir

BUILTIN_CORPORA = ("text", "english", "python", "code", "mix", "all")
"""The corpus builder's BUILTIN_KINDS, here so that naming a folder does not import Lightning (a test pins them)."""


def _size_tag(max_bytes: int | None) -> str:
    return "all" if max_bytes is None else f"{max_bytes / 1e6:g}mb"


def corpus_dir(corpus: str, max_bytes: int | None, home: Path | None = None) -> Path:
    """The built corpus folder for ``corpus`` (a built-in kind or a user source), building it if needed."""
    from transfer_laws.lightning_modules import build_corpus  # lazy: numpy, and the corpus sources' libraries

    home = home or home_dir()
    if corpus in BUILTIN_CORPORA:
        out = home / "corpora" / f"{corpus}-{_size_tag(max_bytes)}"
    else:
        key = hashlib.sha256(corpus.encode()).hexdigest()[:12]
        out = home / "corpora" / f"user-{key}-{_size_tag(max_bytes)}"
    build_corpus(corpus, out, max_bytes=max_bytes)
    return out


def corpus_label(corpus: str) -> str:
    """The name a corpus takes in law names: the built-in kind, or the user's folder/prefix name."""
    if corpus in BUILTIN_CORPORA:
        return corpus
    stem = corpus.rstrip("/").rsplit("/", 1)[-1].lower()
    cleaned = "".join(c if c.isalnum() or c in "_." else "_" for c in stem).strip("_.") or "custom"
    return cleaned


def tokenizer_dir(source: str, vocab_size: int, max_bytes: int | None, home: Path | None = None) -> Path:
    """The BPE tokenizer fitted on ``source`` (trained once, then reused)."""
    home = home or home_dir()
    out = home / "tokenizers" / f"{corpus_label(source)}-{_size_tag(max_bytes)}-v{vocab_size}"
    if (out / "tokenizer.json").exists():
        return out
    # Trained into a folder of this process's own and renamed into place whole: the ranks of one torchrun job may
    # all find it missing at once, and none may read another's half-written tokenizer.json. Whichever rename lands
    # first is the tokenizer every rank uses.
    staging = out.parent / f".{out.name}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    train_tokenizer(corpus_dir(source, max_bytes, home), staging, vocab_size=vocab_size)
    try:
        os.rename(staging, out)
    except OSError:  # another process's folder landed first
        shutil.rmtree(staging, ignore_errors=True)
        if not (out / "tokenizer.json").exists():
            raise
    return out
