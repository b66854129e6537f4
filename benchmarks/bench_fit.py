"""Fitter speed: fit time (CPU seconds of this one-thread process) with 1,000 bootstrap draws for 50 .. 50,000 runs.

Baseline, measured in the same run on the same runs: the point fit alone (``bootstrap=0``); the ratio says what the
1,000 draws cost on top. Also a naive bootstrap (one Python-level least-squares call per draw, on D_E fixed at the
point estimate) for the law step, to show what batching buys. The main table uses ``--method`` (default ``auto``:
every scratch-model candidate fitted and cross-validated); a second table times each D_E method at
``--method-sizes``.
Usage: ``python benchmarks/bench_fit.py [--sizes 50 500 1000 5000 50000] [--method auto] [--method-sizes 50 1000]``.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target says
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _fit_synth import TEXT_TO_PYTHON, kaplan_loss

from transfer_laws.registry.fit import RunResult, fit_transfer_law

N_LEVELS = (1e6, 3e6, 1e7, 3e7, 1e8)


def make_runs(total: int, seed: int = 0) -> list[RunResult]:
    """``total`` runs over 5 N: half scratch (D from 1e3 to 1e13), half fine-tune (D_F from 1e3 to 1e6)."""
    k, alpha, beta = TEXT_TO_PYTHON
    rng = np.random.default_rng(seed)
    per = max(total // (2 * len(N_LEVELS)), 2)
    runs = []
    for n in N_LEVELS:
        for i, d in enumerate(np.geomspace(1e3, 1e13, per)):
            loss = kaplan_loss(n, d) * np.exp(rng.normal(0, 1e-3))
            runs.append(RunResult(f"s{n:g}-{i}", "scratch", n, d, float(loss)))
        for i, d_f in enumerate(np.geomspace(1e3, 1e6, per)):
            loss = kaplan_loss(n, d_f + k * d_f**alpha * n**beta) * np.exp(rng.normal(0, 1e-3))
            runs.append(RunResult(f"f{n:g}-{i}", "finetune", n, d_f, float(loss)))
    return runs


def best_of(fn, repeat: int = 3) -> float:
    """Least CPU seconds of this process over ``repeat`` calls: on a shared machine, wall time mostly measures the
    other processes (one thread here, so CPU time is what the call would take on an idle core)."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def naive_law_bootstrap(runs: list[RunResult], draws: int) -> float:
    """Time of the law step done one draw at a time with np.linalg.lstsq (D_E from the point fit)."""
    law = fit_transfer_law(runs, bootstrap=0)
    used = [p for p in law.points if p.used]
    x = np.stack([np.ones(len(used)), np.log([p.d_f for p in used]), np.log([p.n for p in used])], axis=1)
    y = np.log([p.d_t for p in used])
    rng = np.random.default_rng(0)
    start = time.process_time()
    for _ in range(draws):
        idx = rng.integers(0, len(used), len(used))
        np.linalg.lstsq(x[idx], y[idx], rcond=None)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 500, 1000, 5000, 50000])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--method-sizes", type=int, nargs="*", default=[50, 1000])
    parser.add_argument("--method", default="auto", help="d_e_method of the main table (default: the fitter's)")
    args = parser.parse_args()
    print(f"# {platform.node()} {platform.processor() or platform.machine()} python {platform.python_version()} "
          f"numpy {np.__version__} {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"d_e_method {args.method}")
    print("runs  point_fit_s  fit_1000_draws_s  ratio_vs_point  naive_law_loop_s  (used points)  growth of fit_1000")
    previous = None
    for size in args.sizes:
        runs = make_runs(size)
        fit = functools.partial(fit_transfer_law, runs, d_e_method=args.method)
        point = best_of(lambda fit=fit: fit(bootstrap=0), repeat=3 if size < 10000 else 1)
        full = best_of(lambda fit=fit: fit(bootstrap=args.draws), repeat=2 if size < 10000 else 1)
        naive = naive_law_bootstrap(runs, args.draws)
        law = fit_transfer_law(runs, bootstrap=0)
        used = sum(p.used for p in law.points)
        growth = f"  growth x{full / previous[1]:.2f} for x{size / previous[0]:.0f} runs" if previous else ""
        print(f"{len(runs):>6} {point:11.4f} {full:17.4f} {full / point:15.1f} {naive:17.4f} "
              f"(used {used}){growth}")
        previous = (size, full)
    print(f"per d_e_method: point fit and fit with {args.draws} draws")
    print("runs  method        point_fit_s  fit_1000_draws_s  ratio_vs_point")
    for size in args.method_sizes:
        runs = make_runs(size)
        for method in ("interpolate", "kaplan", "irreducible", "auto"):
            fit = functools.partial(fit_transfer_law, runs, d_e_method=method)
            point = best_of(lambda fit=fit: fit(bootstrap=0), repeat=2)
            full = best_of(lambda fit=fit: fit(bootstrap=args.draws), repeat=2)
            print(f"{len(runs):>6} {method:<12} {point:12.4f} {full:17.4f} {full / point:15.1f}")


if __name__ == "__main__":
    main()
