"""Data pipeline speed and memory: corpus build, tokenizer training, tokenisation, DataModule peak memory.

Each number is printed next to a baseline measured in the same run:
- corpus build (MB/s) vs only reading + UTF-8-decoding the same source files;
- tokenisation through `datasets` (cold cache, then warm) vs one bare batched ``tokenizer(texts)`` call;
- peak resident memory of ``TokenDataModule.setup`` (a fresh process) vs a process that only imports the same libraries.

``--memory-d-f 1e8`` measures only the last item, at that exact D_F, on a corpus large enough to hold it (``--kind
all --max-bytes 300000000``: English prose, Python sources and C headers): one fresh process runs setup and one full
pass over the training batches, first with a cold tokenisation cache, then warm; ``--work-dir`` keeps the corpus,
tokenizer and cache between invocations. When the corpus holds fewer tokens than asked, it measures the whole
train split and says so.

Usage: ``python benchmarks/bench_data.py [--kind python] [--max-bytes N] [--vocab 2048]``;
``python benchmarks/bench_data.py --memory-d-f 1e8 --kind all --max-bytes 300000000 --work-dir DIR``.
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
# now, not peak: anonymous memory vs file-backed pages (the memory-mapped Arrow cache, which the kernel can drop)
_ANON_FILE = ("{k: int(open('/proc/self/status').read().split(k + ':')[1].split()[0]) / 1024 "
              "for k in ('RssAnon', 'RssFile')}")
_IMPORTS = ("import json, sys\nimport datasets, pyarrow.compute, tokenizers, transformers\n"
            "from transfer_laws.lightning_modules import DataConfig, TokenDataModule\n")
_SETUP = (_IMPORTS + "dm = TokenDataModule(DataConfig(corpus_dir=sys.argv[1], tokenizer_dir=sys.argv[2], "
          "cache_dir=sys.argv[3]))\ndm.setup('fit')\n"
          "print(json.dumps({'rss_mb': " + _HWM + ", 'tokens': dm.train_tokens}))\n")
_BASE = _IMPORTS + "print(json.dumps({'rss_mb': " + _HWM + "}))\n"
# setup at an exact D_F (the whole split when the corpus is smaller), then one pass over every training batch
_PASS = (_IMPORTS + "import time\nfrom transfer_laws.lightning_modules import BudgetError\n"
         "def dm_for(d_f):\n"
         "    return TokenDataModule(DataConfig(corpus_dir=sys.argv[1], tokenizer_dir=sys.argv[2], "
         "cache_dir=sys.argv[3], d_f_tokens=d_f, context_length=128, batch_size=8))\n"
         "start = time.perf_counter()\nasked = int(float(sys.argv[4]))\ndm, short = dm_for(asked), None\n"
         "try:\n    dm.setup('fit')\nexcept BudgetError as exc:\n    short = str(exc)\n"
         "    dm = dm_for(None)\n    dm.setup('fit')\n"
         "setup_s = time.perf_counter() - start\nsetup_mb = " + _HWM + "\nbatches = targets = 0\n"
         "for x, y in dm.train_dataloader():\n    batches += 1\n    targets += int((y != -100).sum())\n"
         "print(json.dumps({'rss_mb': " + _HWM + ", 'setup_rss_mb': setup_mb, 'tokens': dm.train_tokens, "
         "'chars': dm.train_chars, 'batches': batches, 'targets': targets, 'setup_s': setup_s, "
         "'pass_s': time.perf_counter() - start - setup_s, 'short': short, 'now': " + _ANON_FILE + "}))\n")


def _peak(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _memory_at(args: argparse.Namespace) -> None:
    """Peak RSS of setup + one pass of batches at ``--memory-d-f`` tokens, cold cache then warm, vs imports only."""
    from transfer_laws.lightning_modules import build_corpus, train_tokenizer

    root = Path(args.work_dir)
    start = time.perf_counter()
    manifest = build_corpus(args.kind, root / f"corpus-{args.kind}-{args.max_bytes}", max_bytes=args.max_bytes)
    print(f"corpus {args.kind}: {(manifest.train.bytes + manifest.test.bytes) / 1e6:.1f} MB, "
          f"{manifest.train.docs + manifest.test.docs:,} docs, sources "
          + ", ".join(f"{s['name']} {s['kept_docs']}" for s in manifest.sources)
          + f"; built or reused in {time.perf_counter() - start:.0f} s", flush=True)
    tok = root / f"tok-v{args.vocab}"
    if not (tok / "tokenizer.json").is_file():
        build_corpus("text", root / "text-4mb", max_bytes=4_000_000)
        train_tokenizer(root / "text-4mb", tok, vocab_size=args.vocab)
    base = _peak(_BASE)
    print(f"baseline: a process importing the same libraries peaks at {base['rss_mb']:.0f} MB", flush=True)
    for label in ("cold cache", "warm cache"):
        got = _peak(_PASS, str(manifest.path), str(tok), str(root / "cache"), str(args.memory_d_f))
        if got["short"]:
            print(f"  the corpus is short of D_F={args.memory_d_f:.3g}: {got['short']}")
        print(f"{label}: D_F={got['tokens']:,} tokens ({got['chars']:,} chars), setup {got['setup_s']:.0f} s, "
              f"one pass of {got['batches']:,} batches ({got['targets']:,} targets) {got['pass_s']:.0f} s; peak RSS "
              f"after setup {got['setup_rss_mb']:.0f} MB, after the pass {got['rss_mb']:.0f} MB = "
              f"+{got['rss_mb'] - base['rss_mb']:.0f} MB over imports "
              f"({(got['rss_mb'] - base['rss_mb']) * 2**20 / got['tokens']:.2f} bytes/token); resident at the end: "
              f"{got['now']['RssAnon']:.0f} MB anonymous, {got['now']['RssFile']:.0f} MB file-backed", flush=True)


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
    parser.add_argument("--memory-d-f", type=float, default=None, help="only measure peak memory at this D_F")
    parser.add_argument("--work-dir", default=None, help="with --memory-d-f: keep corpus, tokenizer and cache here")
    args = parser.parse_args()
    if args.memory_d_f is not None:
        if args.work_dir is None:
            with tempfile.TemporaryDirectory() as tmp:
                args.work_dir = tmp
                _memory_at(args)
        else:
            _memory_at(args)
        return

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
