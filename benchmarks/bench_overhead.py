"""Training overhead: our full path (TransferLM + build_trainer + MLflow logger on SQLite) vs a bare PyTorch loop.

Both train the same GPT (same init) on the same batches of real text (Python standard-library source, byte ids)
in the same process, alternating bare and full repeats so that machine drift hits both (on a shared machine
the ratio of the best repeats is the less disturbed estimate; both are printed). The bare loop does what
any honest run does (AdamW, warmup + cosine, gradient clipping, reading the loss each step); the full path adds
Lightning, our callbacks, the NaN check, throughput metrics and MLflow logging every ``--log-every`` steps.
Throughput is timed over the same window of steps after a warm-up, so the Trainer's one-off setup and final
evaluation (reported separately) are not mixed into tokens/s. Prints tokens/s per size and the ratio full / bare
(target >= 0.95).

    python benchmarks/bench_overhead.py            # N ~1e5, ~1e6, ~1e7; a few minutes on 2 cores
    python benchmarks/bench_overhead.py --quick    # short windows: a smoke run, not a measurement
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _timing import bare_loop, full_path, quiet, stdlib_batches

SIZES = {"2x64": 300, "6x128": 120, "8x320": 40}
"""Preset -> timed steps per repeat (each window is several seconds on 2 cores)."""
WARMUP = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows (a smoke run, not a measurement)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vocab", type=int, default=2048, help="model vocabulary (our CPU sweeps use 2048)")
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    quiet()
    torch.set_num_threads(args.threads)
    from lightning.pytorch.loggers import MLFlowLogger

    from transfer_laws.lightning_modules import OptimConfig, TrainConfig, non_embedding_params, preset

    optim = OptimConfig(lr=1e-3, warmup_steps=10)
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} threads, V={args.vocab}, context {args.context}, batch {args.batch}, "
          f"MLflow logging every {args.log_every} steps to SQLite, {args.repeats} repeats, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| preset | N | steps | bare tok/s (median) | full tok/s (median) | ratio of medians | ratio of bests "
          "| per-repeat ratios | fit setup+final eval s |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"

        def run_full(config: object, batches: list, val: list, seed: int) -> tuple[float, float]:
            train = TrainConfig(max_steps=len(batches), max_epochs=1, eval_every_steps=len(batches) + 1,
                                log_every_steps=args.log_every)
            logger = MLFlowLogger(experiment_name="bench-overhead", tracking_uri=uri)
            tok_s, fixed, _ = full_path(config, optim, train, batches, val, WARMUP, seed, logger=logger)
            return tok_s, fixed

        for name, steps in SIZES.items():
            steps = max(10, steps // 4) if args.quick else steps
            config = preset(name, vocab_size=args.vocab, context_length=args.context)
            batches = stdlib_batches(WARMUP + steps, args.batch, args.context)
            val = batches[:2]
            run_full(config, batches[: WARMUP + 2], val, 0)  # first-use costs (store schema, allocator) off the clock
            bare, full, fixed = [], [], []
            for rep in range(args.repeats):
                bare.append(bare_loop(config, optim, batches, WARMUP, rep))
                tok_s, overhead = run_full(config, batches, val, rep)
                full.append(tok_s)
                fixed.append(overhead)
            ratios = [f / b for f, b in zip(full, bare, strict=True)]
            ratio = statistics.median(full) / statistics.median(bare)
            print(f"| {name} | {non_embedding_params(config):.2e} | {steps} | {statistics.median(bare):,.0f} "
                  f"| {statistics.median(full):,.0f} | {ratio:.3f} | {max(full) / max(bare):.3f} "
                  f"| {', '.join(f'{r:.2f}' for r in ratios)} "
                  f"| {statistics.median(fixed):.2f} |", flush=True)


if __name__ == "__main__":
    main()
