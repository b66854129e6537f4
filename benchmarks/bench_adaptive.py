"""Pinning a transfer law: the advice's pin loop vs a random grid order vs the full grid, every run paid for.

Synthetic world, no training. A truth family gives the from-scratch loss L(N, D) (``kaplan``: Kaplan et al.'s form;
``irreducible``: E + A/N^a + B/D^b; or ``--family module:function`` for any loss(N, D) callable); a fine-tune at
(N, D_F) reaches the scratch loss at D_E = D_F + D_T with Table 1's text->python law D_T = 1.9e4 D_F^0.18 N^0.38;
every run's loss gets multiplicative noise (default 0.3%) drawn for that run (a repeat gets new noise).

The grid: 5 sizes x 6 D_F fine-tunes and 5 sizes x 8 scratch D. Every arm pays for every run it trains: 6 N tokens
x 3 epochs, plus a size's pretraining (6 N x 20 N tokens) the first time a run needs that size. All arms start
from the same seed runs (two sizes, N = 1e6 and 1e8, each with scratch runs at D = 1e6, 1e9, 1e12 and the grid's
largest, 1e13, and fine-tunes at D_F = 1e4 and 1e6) and stop at the same target: alpha's 95% half-width <=
``--tolerance``, beta's interval excluding 0, every bootstrap draw identifying the law, no fit warning
(``registry.pin.missing_for``).

- random: the remaining grid cells in a seeded random order, refitting after each, until the target holds;
- full: the whole grid (the paper's way), target judged once at the end;
- adaptive: ``registry.pin.pin`` with the grid's cells (and repeats of measured fine-tunes) as candidates; a new
  size comes as a bundle (its pretraining, scratch runs at 1e6, 1e9 and 1e12, fine-tunes at both seed D_F).

Prints per seed the runs and compute of each arm (and why an arm stopped without the target) and, per family, the
median adaptive / random ratios.

    python benchmarks/bench_adaptive.py --seeds 20                 # both built-in families
    python benchmarks/bench_adaptive.py --seeds 2 --bootstrap 100  # smoke run
    python benchmarks/bench_adaptive.py --family mypkg.truths:loss  # your own L(N, D)
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _fit_synth import irreducible_loss, kaplan_loss

from transfer_laws.registry.fit import FitError, RunResult, TransferLaw, fit_transfer_law
from transfer_laws.registry.fit.advice import Candidate, Target, compute_flops
from transfer_laws.registry.pin import EXIT_PINNED, Budget, PinRun, Spent, missing_for, pin

K, ALPHA, BETA = 1.9e4, 0.18, 0.38
GRID_N = (1e6, 3e6, 1e7, 3e7, 1e8)
GRID_D_F = (1e4, 3e4, 1e5, 3e5, 1e6, 3e6)
SCRATCH_D = tuple(10.0 ** e for e in range(6, 14))  # 1e6 .. 1e13
EPOCHS = 3.0
PRETRAIN_TOKENS_PER_PARAM = 20.0
SEED_N = (GRID_N[0], GRID_N[-1])
SEED_D = (1e6, 1e9, 1e12, SCRATCH_D[-1])
"""The seed's scratch curves reach the grid's largest D: a seed size whose low-data cutoff lies beyond its curve
leaves a warning that exactly one run removes, and every arm must pay for it (on the irreducible family the 1e13-token
scratch run at N = 1e8, 1.8e22 FLOP, two thirds of the whole grid's compute), so the ratio would measure the seed."""
SEED_D_F = (1e4, 1e6)
NEW_SIZE_D = (1e6, 1e9, 1e12)
"""A new size's scratch runs, bundled with its pretraining (larger ones are ordinary candidates once it exists)."""
FAMILIES: dict[str, Callable[..., np.ndarray]] = {"kaplan": kaplan_loss, "irreducible": irreducible_loss}
METHOD = {"kaplan": "kaplan", "irreducible": "irreducible"}


@dataclass(frozen=True)
class Cell:
    role: str
    n: float
    d: float


def family(name: str) -> Callable[..., np.ndarray]:
    """A built-in family, or ``module:function`` imported from outside."""
    if name in FAMILIES:
        return FAMILIES[name]
    module, _, attr = name.partition(":")
    if not attr:
        raise SystemExit(f"--family {name!r}: give kaplan, irreducible or module:function")
    return getattr(importlib.import_module(module), attr)


class World:
    """One seed's truth: losses with per-run noise, and the compute every run (and every new size) costs."""

    def __init__(self, loss: Callable[..., np.ndarray], seed: int, noise: float) -> None:
        self.loss, self.seed, self.noise = loss, seed, noise

    def train(self, cell: Cell, repeat: int = 0) -> RunResult:
        d = cell.d if cell.role == "scratch" else cell.d + K * cell.d**ALPHA * cell.n**BETA
        rng = np.random.default_rng([self.seed, int(cell.role == "scratch"), int(np.log10(cell.n) * 1000),
                                     int(np.log10(cell.d) * 1000), repeat])
        value = float(self.loss(cell.n, d)) * float(np.exp(rng.normal(0, self.noise)))
        return RunResult(f"{cell.role}-{cell.n:g}-{cell.d:g}-{repeat}", cell.role, cell.n, cell.d, value)


def cost(cells: Sequence[Cell], pretrained: set[float]) -> float:
    """Compute of training ``cells`` (6 N tokens x epochs) plus the pretraining of sizes not yet in ``pretrained``."""
    flops = sum(compute_flops(c.n, c.d, EPOCHS) for c in cells)
    return flops + sum(compute_flops(n, PRETRAIN_TOKENS_PER_PARAM * n) for n in {c.n for c in cells} - pretrained)


def seed_cells(seed_d: Sequence[float] = SEED_D) -> list[Cell]:
    return ([Cell("scratch", n, d) for n in SEED_N for d in seed_d]
            + [Cell("finetune", n, d) for n in SEED_N for d in SEED_D_F])


def grid_cells() -> list[Cell]:
    return ([Cell("finetune", n, d) for n, d in itertools.product(GRID_N, GRID_D_F)]
            + [Cell("scratch", n, d) for n, d in itertools.product(GRID_N, SCRATCH_D)])


class Judge:
    """Fits and judges the target the same way for every arm."""

    def __init__(self, method: str, bootstrap: int, target: Target) -> None:
        self.method, self.bootstrap, self.target = method, bootstrap, target

    def fit(self, results: list[RunResult]) -> TransferLaw | None:
        """The law, or None while it cannot be fitted."""
        try:
            return fit_transfer_law(results, d_e_method=self.method, bootstrap=self.bootstrap, seed=0)
        except FitError:
            return None

    def missing(self, results: list[RunResult]) -> list[str]:
        """What the fit of ``results`` lacks for the target ([]: pinned)."""
        law = self.fit(results)
        return ["no law can be fitted"] if law is None else missing_for(law, self.target)

    def pinned(self, results: list[RunResult]) -> bool:
        return not self.missing(results)


@dataclass(frozen=True)
class Arm:
    """What one arm spent past the seed runs, and whether (and why) it stopped."""

    runs: int
    flops: float
    pinned: bool
    why: str = ""


def random_arm(world: World, judge: Judge, seed: int, start: list[Cell]) -> Arm:
    rest = [c for c in grid_cells() if c not in start]
    np.random.default_rng(seed + 1000).shuffle(rest)
    results = [world.train(c) for c in start]
    pretrained = set(SEED_N)
    spent = cost(start, set())
    ok = judge.pinned(results)
    for cell in rest:
        if ok:
            break
        spent += cost([cell], pretrained)
        pretrained.add(cell.n)
        results.append(world.train(cell))
        ok = judge.pinned(results)
    return Arm(len(results) - len(start), spent - cost(start, set()), ok, "" if ok else "grid exhausted")


def full_arm(world: World, judge: Judge, start: list[Cell]) -> Arm:
    rest = [c for c in grid_cells() if c not in start]
    missing = judge.missing([world.train(c) for c in start + rest])
    return Arm(len(rest), cost(start + rest, set()) - cost(start, set()), not missing, "; ".join(missing))


class MemoryQueue:
    """``registry.pin.RunQueue`` in memory: one worker, runs trained at once."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.waiting: list[tuple[PinRun, float]] = []
        self.done: list[tuple[PinRun, RunResult | None]] = []
        self.flops = 0.0

    def held(self) -> list[PinRun]:
        return [r for r, _ in self.waiting] + [r for r, _ in self.done]

    def spent(self) -> Spent:
        return Spent(flops=self.flops, runs=len(self.done))

    def claim(self, runs: Sequence[PinRun], reason: str, flops: Sequence[float]) -> None:
        self.waiting += list(zip(runs, flops, strict=True))

    def work_one(self) -> bool:
        if not self.waiting:
            return False
        run, flops = self.waiting.pop(0)
        self.flops += flops
        result = None if run.role == "pretrain" else self.world.train(Cell(run.role, run.n_params, run.tokens),
                                                                        run.seed)
        self.done.append((run, result))
        return True


def adaptive_arm(world: World, judge: Judge, draws: int, start: list[Cell]) -> Arm:
    seed_results = [world.train(c) for c in start]
    queue = MemoryQueue(world)

    def results() -> list[RunResult]:
        return seed_results + [r for _, r in queue.done if r is not None]

    def fit() -> TransferLaw:
        law = judge.fit(results())
        if law is None:
            raise ValueError("no law")
        return law

    def candidates(law: TransferLaw) -> list[Candidate]:
        sizes = set(SEED_N) | {r.n_params for r, _ in queue.done}
        out = []
        for c in grid_cells():
            if c.n in sizes:
                out.append(Candidate(c.n, c.d, c.role, EPOCHS))
        for n in sorted(set(GRID_N) - sizes):  # a new size: pretraining, its scratch curve and two fine-tunes
            bundle = tuple([("scratch", d) for d in NEW_SIZE_D] + [("finetune", SEED_D_F[1])])
            out.append(Candidate(n, SEED_D_F[0], "finetune", EPOCHS, pretrain_tokens=PRETRAIN_TOKENS_PER_PARAM * n,
                                 bundle=bundle))
        return out

    outcome = pin(fit, candidates, queue, judge.target, Budget(flops=cost(grid_cells(), set()) * 3),
                  draws=draws, show_plan=False)
    runs = sum(1 for r, _ in queue.done if r.role != "pretrain")
    return Arm(runs, queue.flops, outcome.exit_code == EXIT_PINNED, outcome.reason)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1 (to "
                        "split the seeds across processes)")
    parser.add_argument("--family", action="append", help="kaplan, irreducible or module:function (repeatable; "
                        "default: kaplan and irreducible)")
    parser.add_argument("--noise", type=float, default=0.003, help="relative loss noise (sd of ln loss)")
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--advice-draws", type=int, default=100)
    parser.add_argument("--tolerance", type=float, default=0.03)
    parser.add_argument("--seed-d", type=lambda text: tuple(float(x) for x in text.split(",")), default=SEED_D,
                        help="the seed's scratch D at both seed sizes, comma-separated (default: %(default)s; the "
                        "former design: 1e6,1e9,1e12)")
    args = parser.parse_args()
    start = seed_cells(args.seed_d)
    families = args.family or ["kaplan", "irreducible"]
    target = Target(args.tolerance, beta_excludes_0=True)
    grid = grid_cells()
    print(f"# {platform.node()} {platform.processor() or platform.machine()}; grid {len(grid)} runs "
          f"({len(GRID_N)} N x {len(GRID_D_F)} D_F fine-tunes, {len(GRID_N)} N x {len(SCRATCH_D)} scratch D); "
          f"noise {args.noise}; bootstrap {args.bootstrap}; target alpha +-{args.tolerance}, beta excludes 0, "
          "all draws, no warning; compute 6 N tokens x 3 epochs + pretraining 6 N x 20 N; seed: N "
          f"{', '.join(f'{n:g}' for n in SEED_N)}, scratch D {', '.join(f'{d:g}' for d in args.seed_d)}, D_F "
          f"{', '.join(f'{d:g}' for d in SEED_D_F)}")
    for name in families:
        loss = family(name)
        judge = Judge(METHOD.get(name, "auto"), args.bootstrap, target)
        print(f"\n## family {name} (D_E by {judge.method})")
        print(f"{'seed':>4} {'random runs':>11} {'random EF':>9} {'full runs':>9} {'full EF':>8} {'adapt runs':>10} "
              f"{'adapt EF':>8} {'runs a/r':>8} {'compute a/r':>11} {'s':>5}")
        ratios_runs, ratios_flops = [], []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            began = time.monotonic()
            world = World(loss, seed, args.noise)
            r = random_arm(world, judge, seed, start)
            f = full_arm(world, judge, start)
            a = adaptive_arm(world, judge, args.advice_draws, start)
            ratios_runs.append(a.runs / max(r.runs, 1))
            ratios_flops.append(a.flops / r.flops if r.flops > 0 else float("nan"))
            flags = "".join(f" {name}:{'pinned' if arm.pinned else f'NOT pinned ({arm.why})'}" for name, arm in
                            (("random", r), ("full", f), ("adaptive", a)))
            print(f"{seed:4d} {r.runs:11d} {r.flops / 1e18:9.3g} {f.runs:9d} {f.flops / 1e18:8.3g} {a.runs:10d} "
                  f"{a.flops / 1e18:8.3g} "
                  f"{ratios_runs[-1]:8.2f} {ratios_flops[-1]:11.2f} {time.monotonic() - began:5.0f} {flags}",
                  flush=True)
        print(f"median adaptive / random ({name}): runs {statistics.median(ratios_runs):.2f}, "
              f"compute {statistics.median(ratios_flops):.2f} (EF = 1e18 FLOP)")


if __name__ == "__main__":
    main()
