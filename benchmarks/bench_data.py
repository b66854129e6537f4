"""Data pipeline speed and memory: corpus build, tokenizer training, tokenisation, DataModule peak memory.

Each number is printed next to a baseline measured in the same run:
- corpus build (MB/s) vs only reading + UTF-8-decoding the same source files;
- tokenisation through `datasets` (cold cache, then warm) vs one bare batched ``tokenizer(texts)`` call;
- peak resident memory of ``TokenDataModule.setup`` (a fresh process) vs a process that only imports the same libraries.

Usage: ``python benchmarks/bench_data.py [--kind python] [--max-bytes N] [--vocab 2048]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# VmHWM, not ru_maxrss: ru_maxrss survives exec and would report the parent's peak
_HWM = "int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) / 1024"
_IMPORTS = ("import json, sys\nimport datasets, pyarrow.compute, tokenizers, transformers\n"
            "from transfer_laws.lightning_modules import DataConfig, TokenDataModule\n")
_SETUP = (_IMPORTS + "dm = TokenDataModule(DataConfig(corpus_dir=sys.argv[1], tokenizer_dir=sys.argv[2], "
          "cache_dir=sys.argv[3]))\ndm.setup('fit')\n"
          "print(json.dumps({'rss_mb': " + _HWM + ", 'tokens': dm.train_tokens}))\n")
_BASE = _IMPORTS + "print(json.dumps({'rss_mb': " + _HWM + "}))\n"


def _peak(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _read_baseline(corpus: Path) -> float:
    """Seconds to read and decode the source files the built corpus came from (the I/O floor)."""
    import sysconfig

    from transfer_laws.lightning_modules.corpora import CorpusManifest

    manifest = CorpusManifest.load(corpus)
    root = Path(sysconfig.get_paths()["stdlib"])
    ids = [json.loads(line)["doc_id"] for name in ("train.jsonl", "test.jsonl")
           for line in (corpus / name).read_text().splitlines()]
    start = time.perf_counter()
    if manifest.name == "python":
        for doc_id in ids:
            (root / doc_id.split("/", 1)[1]).read_bytes().decode("utf-8")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="python", help="corpus kind to tokenise (python reads the stdlib)")
    parser.add_argument("--max-bytes", type=int, default=None, help="corpus cap; default: the whole source")
    parser.add_argument("--vocab", type=int, default=2048, help="BPE vocabulary size")
    args = parser.parse_args()

    from transfer_laws.lightning_modules import (
        DataConfig,
        TokenDataModule,
        build_corpus,
        load_tokenizer,
        train_tokenizer,
    )

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        manifest = build_corpus(args.kind, root / "corpus", max_bytes=args.max_bytes)
        build_s = time.perf_counter() - start
        mb = (manifest.train.bytes + manifest.test.bytes) / 1e6
        read_s = _read_baseline(root / "corpus")
        print(f"corpus {args.kind}: {mb:.1f} MB, {manifest.train.docs + manifest.test.docs} docs; build "
              f"{build_s:.2f} s = {mb / build_s:.2f} MB/s; read+decode only {read_s:.2f} s; "
              f"build/read time ratio {build_s / max(read_s, 1e-9):.1f}")

        start = time.perf_counter()
        text = build_corpus("text", root / "text", max_bytes=4_000_000)
        info = train_tokenizer(root / "text", root / "tok", vocab_size=args.vocab)
        print(f"tokenizer: text corpus {text.train.bytes / 1e6:.1f} MB built + BPE V={args.vocab} trained in "
              f"{time.perf_counter() - start:.2f} s")

        tok = load_tokenizer(info.path)
        texts = [json.loads(line)["text"] for line in (root / "corpus" / "train.jsonl").read_text().splitlines()]
        train_mb = sum(len(t.encode()) for t in texts) / 1e6
        start = time.perf_counter()
        tok(texts, add_special_tokens=False)
        bare_s = time.perf_counter() - start
        timings = []
        for _ in ("cold", "warm"):
            start = time.perf_counter()
            dm = TokenDataModule(DataConfig(corpus_dir=root / "corpus", tokenizer_dir=info.path,
                                            cache_dir=root / "cache"))
            dm.setup("fit")
            timings.append(time.perf_counter() - start)
        print(f"tokenise {train_mb:.1f} MB -> {dm.train_tokens:,} tokens: bare tokenizer {bare_s:.2f} s "
              f"({train_mb / bare_s:.2f} MB/s); DataModule cold {timings[0]:.2f} s ({train_mb / timings[0]:.2f} MB/s,"
              f" ratio to bare {bare_s / timings[0]:.2f}); warm (cached) {timings[1]:.2f} s")

        base = _peak(_BASE)
        peak = _peak(_SETUP, str(root / "corpus"), str(info.path), str(root / "cache"))
        extra = peak["rss_mb"] - base["rss_mb"]
        per_token = extra * 2**20 / peak["tokens"]
        print(f"peak RSS of setup at D_F={peak['tokens']:,} tokens: {peak['rss_mb']:.0f} MB vs imports only "
              f"{base['rss_mb']:.0f} MB: +{extra:.0f} MB = {per_token:.1f} bytes/token "
              f"(linear estimate at D_F=1e8: +{per_token * 1e8 / 2**20:.0f} MB)")


if __name__ == "__main__":
    main()
