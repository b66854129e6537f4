"""Where the noise on real scratch losses comes from: the seeds, the held-out sample, or the scratch form.

Trains real from-scratch runs on Python with the recipe ``transfer-laws demo --full`` uses
(``plugin/recipes/scratch.py``'s optimiser and loop, the demo's step cap and patience, two held-out evaluations per
epoch), without MLflow, and prints three tables:

1. **Seeds.** Per cell (N, D): the best held-out loss over data seeds (``--seed``: which pieces of which documents form
   D and their batch order, init seed fixed) and over init seeds (``--train.seed``, data fixed), as the standard
   deviation of ln L (a share of the loss, the unit the fitter reads its noise in), with the step of the best
   evaluation and the step the run stopped at.
2. **Held-out sample.** The same best weights scored on ``--test-samples`` disjoint slices of the test split, each as
   large as the fixed test set: the spread of one model's loss over slices (would another sample give another
   loss?) and the spread of the difference between two runs of a cell over slices (does the sample move one run
   against another?, the part that can reach residuals, since every run is scored on the same slice).
3. **Scratch form.** Each candidate D_E model of the fitter (``registry/fit/_select.py``: Kaplan, irreducible,
   interpolation) fitted to the grid's single-seed losses (one run per cell, as the demo has): its residual noise
   sqrt(RSS / dof) in ln L, beside the seed noise of table 1 (what residuals would show if the form were exact)
   and its fit to the seed-mean losses.

It measures the data pipeline of the checkout it runs in: RESULTS.md's before and after are two checkouts, each
with its own ``--out``. Every run is appended to ``--out`` (JSON lines) and a rerun with the same ``--out`` trains
only the missing runs.
Usage: ``python benchmarks/bench_scratch_noise.py [--cells 1x32:2000 2x64:2000 1x32:20000] [--seeds 3]
[--init-seeds 3] [--grid-sizes 1x32 2x32 2x64] [--grid-tokens 2000 6000 20000 60000] [--out FILE]``
(``--report-only`` prints the tables of an ``--out`` without training).
Only ratios and spreads are printed; no timing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: the machine is shared; the loss does not depend on it

import numpy as np

RECIPES = ("demo-full",)
"""``demo-full``: the recipe as ``transfer-laws demo --full`` runs it."""


def recipe(name: str) -> tuple[object, object, float]:
    """(OptimConfig, TrainConfig, evals per epoch) of a named recipe."""
    from transfer_laws.plugin.recipes import scratch
    from transfer_laws.plugin.sweeps import demo

    if name not in RECIPES:
        raise SystemExit(f"unknown --recipe {name!r}; choose from {', '.join(RECIPES)}")
    train = replace(scratch.TRAIN, max_steps=demo.FULL["run_max_steps"], patience=demo.FULL["patience"])
    return scratch.OPTIM, train, float(scratch.ScratchArgs.__dataclass_fields__["evals_per_epoch"].default)


class _Workspace:
    """The Python corpus, the English tokenizer and the whole test split, built once under --home."""

    def __init__(self, home: Path, corpus_mb: float, vocab: int) -> None:
        from transfer_laws.plugin.recipes import workspace

        os.environ["TRANSFER_LAWS_HOME"] = str(home)
        self.corpus = workspace.corpus_dir("python", int(corpus_mb * 1e6))
        self.tokenizer = workspace.tokenizer_dir("text", vocab, int(4.0 * 1e6))
        self._test: np.ndarray | None = None

    def data(self, d: int, seed: int, test_tokens: int | None) -> object:
        from transfer_laws.lightning_modules.config import DataConfig

        return DataConfig(corpus_dir=self.corpus, tokenizer_dir=self.tokenizer, d_f_tokens=d, seed=seed,
                          test_tokens=test_tokens, batch_size=8, context_length=128)

    def test_split(self) -> np.ndarray:
        """Every token of the test split in the held-out order (the fixed test set is its first ``--test-tokens``)."""
        if self._test is None:
            from transfer_laws.lightning_modules import TokenDataModule

            module = TokenDataModule(self.data(2, 0, None))
            module.setup("fit")
            self._test = np.asarray(module.val_dataloader().dataset.tokens)
        return self._test


def train_one(ws: _Workspace, size: str, d: int, data_seed: int, init_seed: int, recipe_name: str,
              test_tokens: int, slices: int) -> dict:
    """One scratch run: its best held-out loss, when it was reached and stopped, and its loss on other slices."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from transfer_laws.lightning_modules import TokenDataModule, build_trainer
    from transfer_laws.lightning_modules.config import preset
    from transfer_laws.lightning_modules.data import WindowDataset
    from transfer_laws.plugin.training import eval_interval, seeded_module

    torch.set_num_threads(1)
    optim, train, per_epoch = recipe(recipe_name)
    data = TokenDataModule(ws.data(d, data_seed, test_tokens))
    data.setup("fit")
    train = replace(train, seed=init_seed, eval_every_steps=eval_interval(data.train_tokens, 128, 8, per_epoch))
    module = seeded_module(replace(preset(size, data.vocab_size), vocab_size=data.vocab_size), optim, None,
                           init_seed)
    curve: list[tuple[int, float]] = []

    class Curve(L.Callback):
        def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            curve.append((int(trainer.global_step), float(trainer.callback_metrics["test_loss"])))

    trainer = build_trainer(train, callbacks=[Curve()], enable_progress_bar=False)
    trainer.fit(module, datamodule=data)
    tokens = ws.test_split()
    on_slices = []
    for k in range(slices):
        chunk = tokens[k * test_tokens: (k + 1) * test_tokens + 1]
        if len(chunk) < test_tokens:
            break
        loader = DataLoader(WindowDataset(chunk, 128, 0), batch_size=8)
        on_slices.append(module.evaluate(loader))
    return {"size": size, "n": module.n_params, "d": d, "data_seed": data_seed, "init_seed": init_seed,
            "recipe": recipe_name, "best": module.best_test_loss, "best_step": module.best_step,
            "last_step": int(trainer.global_step), "eval_every": train.eval_every_steps, "curve": curve,
            "slices": on_slices}


def _key(r: dict) -> tuple:
    return r["recipe"], r["size"], r["d"], r["data_seed"], r["init_seed"]


def _load(path: Path) -> dict[tuple, dict]:
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {_key(r): r for r in rows}


def plan(args: argparse.Namespace) -> list[tuple[str, int, int, int]]:
    """(size, D, data seed, init seed) of every run: the seed cells twice over, then the single-seed grid."""
    runs = []
    for size, d in args.cells:
        runs += [(size, d, s, 0) for s in range(args.seeds)]
        runs += [(size, d, 0, s) for s in range(1, args.init_seeds)]
    runs += [(size, d, 0, 0) for size in args.grid_sizes for d in args.grid_tokens]
    return list(dict.fromkeys(runs))


def _sd(values: list[float]) -> str:
    """The sd of ln L as a share of the loss, '-' for fewer than two values."""
    return f"{float(np.std(np.log(values), ddof=1)):.2%}" if len(values) > 1 else "-"


def seed_table(done: dict[tuple, dict], args: argparse.Namespace) -> float:
    """Table 1; returns the pooled seed noise (sd of ln L over all seeds of all cells)."""
    print(f"\n1. Seeds ({args.recipe}): best held-out loss; sd of ln L across seeds (a share of the loss)")
    print(f"{'size':>5} {'N':>7} {'D':>7} | {'data seeds: losses':<26} {'sd':>6} | {'init seeds: losses':<26} "
          f"{'sd':>6} | best step / stop step (eval every)")
    pooled = []
    for size, d in args.cells:
        by_data = [done[(args.recipe, size, d, s, 0)] for s in range(args.seeds)
                   if (args.recipe, size, d, s, 0) in done]
        by_init = [done[(args.recipe, size, d, 0, s)] for s in range(args.init_seeds)
                   if (args.recipe, size, d, 0, s) in done]
        if not by_data:
            continue
        runs = list({id(r): r for r in by_data + by_init}.values())
        logs = np.log([r["best"] for r in runs])
        pooled += list(logs - logs.mean())
        steps = " ".join(f"{r['best_step']}/{r['last_step']}" for r in runs)
        data_losses = " ".join(f"{r['best']:.3f}" for r in by_data)
        init_losses = " ".join(f"{r['best']:.3f}" for r in by_init)
        print(f"{size:>5} {by_data[0]['n']:>7,} {d:>7,} | {data_losses:<26} {_sd([r['best'] for r in by_data]):>6}"
              f" | {init_losses:<26} {_sd([r['best'] for r in by_init]):>6} | {steps} ({runs[0]['eval_every']})")
    cells = len(args.cells)
    dof = max(1, len(pooled) - cells)
    noise = float(np.sqrt(np.sum(np.square(pooled)) / dof)) if pooled else float("nan")
    print(f"pooled seed noise (data and init seeds together): {noise:.2%} of the loss")
    mine = [r for k, r in done.items() if k[0] == args.recipe]
    capped = [r for r in mine if r["best_step"] == r["last_step"]]
    print(f"runs whose best evaluation was their last (a step or epoch cap ended them still improving): "
          f"{len(capped)} of {len(mine)}, at D = {', '.join(f'{d:,}' for d in sorted({r['d'] for r in capped}))}")
    return noise


def sample_table(done: dict[tuple, dict], args: argparse.Namespace) -> None:
    """Table 2."""
    print(f"\n2. Held-out sample: the best weights on disjoint {args.test_tokens:,}-token slices of the test split")
    print(f"{'size':>5} {'D':>7} | slices | loss on the fixed set | sd over slices: one model | "
          "difference of two runs")
    for size, d in args.cells:
        runs = [r for k, r in done.items() if k[:3] == (args.recipe, size, d) and len(r["slices"]) > 1]
        if len(runs) < 2:
            continue
        grid = np.log(np.array([r["slices"][: min(len(x["slices"]) for x in runs)] for r in runs]))
        one = float(np.mean(np.std(grid, axis=1, ddof=1)))
        diff = grid[1:] - grid[0]
        two = float(np.mean(np.std(diff, axis=1, ddof=1)))
        print(f"{size:>5} {d:>7,} | {grid.shape[1]:>6} | {runs[0]['best']:>21.3f} | {one:>25.2%} | {two:>22.2%}")


def _interpolation_residuals(log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray) -> np.ndarray:
    """Leave-one-out residuals of the per-N smooth curve at each curve's interior runs (0 at its ends): the curve
    passes through its own nodes, so only a left-out run can show its error."""
    from transfer_laws.registry.fit._scratch import group_by_n, monotone_curve
    from transfer_laws.registry.fit._smooth import smooth_loss

    _, group = group_by_n(np.exp(log_n))
    r = np.zeros_like(log_l)
    for g in np.unique(group):
        idx = np.flatnonzero(group == g)
        idx = idx[np.argsort(log_d[idx])]
        for i in idx[1:-1]:
            keep = idx[idx != i]
            d, lo = monotone_curve(log_d[keep], log_l[keep])
            r[i] = smooth_loss(d, lo, log_d[i:i + 1])[0] - log_l[i]
    return r


def form_residuals(log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray) -> dict[str, tuple[float, np.ndarray]]:
    """Per candidate scratch model: (residual noise sqrt(RSS / dof) in ln L, residuals fitted - observed)."""
    from transfer_laws.registry.fit._irreducible import fit_irreducible
    from transfer_laws.registry.fit._parametric import noise_scale
    from transfer_laws.registry.fit._scratch import fit_kaplan

    out = {}
    for name, law, p in (("kaplan", fit_kaplan(log_n, log_d, log_l), 4),
                         ("irreducible", fit_irreducible(log_n, log_d, log_l), 5)):
        r = law.log_loss(np.exp(log_n), np.exp(log_d)) - log_l
        out[name] = (noise_scale(r, p), r)
    r = _interpolation_residuals(log_n, log_d, log_l)
    inner = r[r != 0]
    out["interpolate"] = (float(np.sqrt(np.mean(inner**2))) if inner.size else float("nan"), r)
    return out


def form_table(done: dict[tuple, dict], args: argparse.Namespace, seed_noise: float) -> None:
    """Table 3."""
    from transfer_laws.registry.fit._select import choose

    grid = [done[(args.recipe, s, d, 0, 0)] for s in args.grid_sizes for d in args.grid_tokens
            if (args.recipe, s, d, 0, 0) in done]
    if len(grid) < 8:
        print(f"\n3. Scratch form: {len(grid)} grid runs, need at least 8")
        return
    log_n = np.log([r["n"] for r in grid])
    log_d = np.log([r["d"] for r in grid])
    single = np.log([r["best"] for r in grid])
    means = np.array([np.mean(np.log([x["best"] for k, x in done.items() if k[:3] == (args.recipe, r["size"], r["d"])]))
                      for r in grid])
    picked = choose(log_n, log_d, single)
    on_single, on_means = form_residuals(log_n, log_d, single), form_residuals(log_n, log_d, means)
    print(f"\n3. Scratch form on the {len(grid)}-run grid (one seed per cell, as the demo): residual noise "
          "sqrt(RSS / dof) of ln L (interpolate: leave-one-out error at interior runs)")
    print(f"{'form':>12} | {'single seed':>11} | {'seed means':>10} | {'cv error':>8} | worst cell (single seed)")
    for name, (noise, r) in on_single.items():
        worst = int(np.argmax(np.abs(r)))
        cv = picked.cv_error.get(name)
        print(f"{name:>12} | {noise:>11.2%} | {on_means[name][0]:>10.2%} | {'-' if cv is None else f'{cv:.2%}':>8} | "
              f"{grid[worst]['size']} D={grid[worst]['d']:,} {r[worst]:+.2%}")
    print(f"the fitter's choice on the single-seed grid: {picked.chosen}; seed noise (table 1): {seed_noise:.2%}")
    print(f"residuals cell by cell (fitted - observed, ln L), {picked.chosen} form:")
    r = on_single[picked.chosen][1]
    _, at_d = np.unique(log_d.round(9), return_inverse=True)
    common = np.bincount(at_d, weights=r)[at_d] / np.bincount(at_d)[at_d]  # each run's mean residual at its D
    print(f"  shared by every N at the same D (the same documents in every run): {np.sum(common**2) / np.sum(r**2):.0%}"
          f" of the squared residuals (independent noise: about {np.unique(at_d).size / r.size:.0%})")
    for run, res in zip(grid, r, strict=True):
        print(f"  {run['size']:>5} D={run['d']:>7,}: observed {run['best']:.3f}, residual {res:+.2%}")


def _cell(text: str) -> tuple[str, int]:
    size, _, d = text.partition(":")
    if not d.isdigit():
        raise argparse.ArgumentTypeError(f"a seed cell is SIZE:D (e.g. 1x32:2000), got {text!r}")
    return size, int(d)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", nargs="+", type=_cell, help="seed cells SIZE:D",
                        default=[_cell(c) for c in ("1x32:2000", "2x64:2000", "1x32:20000")])
    parser.add_argument("--seeds", type=int, default=3, help="data seeds per seed cell")
    parser.add_argument("--init-seeds", type=int, default=3, help="init seeds per seed cell")
    parser.add_argument("--grid-sizes", nargs="*", default=["1x32", "2x32", "2x64"])
    # demo --full's scratch D without its 200k: one such run takes 10-25 minutes on 2 shared cores
    parser.add_argument("--grid-tokens", nargs="*", type=int, default=[2_000, 6_000, 20_000, 60_000])
    parser.add_argument("--recipe", default="demo-full", choices=RECIPES)
    parser.add_argument("--test-tokens", type=int, default=32_768, help="the fixed held-out set (the recipes')")
    parser.add_argument("--test-samples", type=int, default=4, help="disjoint test slices to score each run on")
    parser.add_argument("--corpus-mb", type=float, default=4.0)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--home", type=Path, default=Path("bench-scratch-noise-home"),
                        help="corpora and tokenizer (built once)")
    parser.add_argument("--out", type=Path, default=Path("bench-scratch-noise.jsonl"), help="runs, one JSON a line")
    parser.add_argument("--report-only", action="store_true", help="print the tables from --out, train nothing")
    args = parser.parse_args()

    done = _load(args.out)
    if not args.report_only:
        ws = _Workspace(args.home.resolve(), args.corpus_mb, args.vocab)
        todo = [run for run in plan(args) if (args.recipe, *run) not in done]
        print(f"{len(todo)} runs to train ({len(done)} already in {args.out})", file=sys.stderr, flush=True)
        for i, (size, d, data_seed, init_seed) in enumerate(todo, 1):
            row = train_one(ws, size, d, data_seed, init_seed, args.recipe, args.test_tokens, args.test_samples)
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            done[_key(row)] = row
            print(f"[{i}/{len(todo)}] {size} D={d:,} seeds {data_seed}/{init_seed}: best {row['best']:.4f} at "
                  f"step {row['best_step']}, stopped {row['last_step']}", file=sys.stderr, flush=True)
    noise = seed_table(done, args)
    sample_table(done, args)
    form_table(done, args, noise)


if __name__ == "__main__":
    main()
