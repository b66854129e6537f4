"""Fitter speed: fit time with 1,000 bootstrap draws for 50 .. 50,000 runs, one core.

Baseline, measured in the same run on the same runs: the point fit alone (``bootstrap=0``); the ratio says what the
1,000 draws cost on top. Also a naive bootstrap (one Python-level least-squares call per draw, on D_E fixed at the
point estimate) for the law step, to show what batching buys. ``global``: the whole fit with 1,000 draws, and the
per-draw cost of its Kaplan refits, batched (what the fit uses) against the former one-scipy-BFGS-per-draw path
(kept as ``log_d_e_global_per_draw``; timed on the first ``--global-draws`` of the same resamplings).
The main table uses ``--method`` (default ``auto``: every scratch-model candidate fitted and cross-validated).
Usage: ``python benchmarks/bench_fit.py [--sizes 50 500 1000 5000 50000] [--global-draws 20] [--method auto]``.
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

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _fit_synth import TEXT_TO_PYTHON, kaplan_loss  # noqa: E402

from transfer_laws.registry.fit import RunResult, fit_transfer_law  # noqa: E402
from transfer_laws.registry.fit._bootstrap import (  # noqa: E402
    log_d_e_global,
    log_d_e_global_per_draw,
    scratch_presence,
)

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


def best_of(fn, repeat: int = 3) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def naive_law_bootstrap(runs: list[RunResult], draws: int) -> float:
    """Time of the law step done one draw at a time with np.linalg.lstsq (D_E from the point fit)."""
    law = fit_transfer_law(runs, bootstrap=0)
    used = [p for p in law.points if p.used]
    x = np.stack([np.ones(len(used)), np.log([p.d_f for p in used]), np.log([p.n for p in used])], axis=1)
    y = np.log([p.d_t for p in used])
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(draws):
        idx = rng.integers(0, len(used), len(used))
        np.linalg.lstsq(x[idx], y[idx], rcond=None)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 500, 1000, 5000, 50000])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--global-draws", type=int, default=20)
    parser.add_argument("--global-sizes", type=int, nargs="+", default=[50, 500, 1000])
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
    print(f"global estimator: whole fit with {args.draws} draws; Kaplan refit cost per draw, batched "
          f"({args.draws} draws) vs one BFGS per draw (the former path, first {args.global_draws} of the same draws)")
    print("runs  point_fit_s  fit_1000_draws_s  ratio_vs_interp_point  refit_batched_ms  refit_bfgs_ms  "
          "bfgs/batched  max|d ln D_E|")
    for size in args.global_sizes:
        runs = make_runs(size)
        point = best_of(lambda runs=runs: fit_transfer_law(runs, d_e_method="global", bootstrap=0), repeat=1)
        full = best_of(lambda runs=runs: fit_transfer_law(runs, d_e_method="global", bootstrap=args.draws), repeat=1)
        interp_point = best_of(lambda runs=runs: fit_transfer_law(runs, bootstrap=0))
        batched, per_draw, gap = refit_costs(runs, args.draws, args.global_draws)
        print(f"{len(runs):>6} {point:11.4f} {full:17.3f} {full / interp_point:22.0f} {1e3 * batched:17.2f} "
              f"{1e3 * per_draw:14.1f} {per_draw / batched:13.0f} {gap:13.1e}")


def refit_costs(runs: list[RunResult], draws: int, baseline_draws: int) -> tuple[float, float, float]:
    """Seconds per draw of the batched Kaplan refits (``draws`` of them, as in a fit) and of one BFGS per draw (the
    first ``baseline_draws`` of the same resamplings), and the largest ln D_E difference of the used fine-tune runs
    between the two on those."""
    law = fit_transfer_law(runs, d_e_method="global", bootstrap=0)
    sc = law.scratch
    used = [p for p in law.points if p.used]
    f_n, f_log_l = np.array([p.n for p in used]), np.log([p.loss for p in used])
    counts = scratch_presence(np.random.default_rng(0), draws, sc.group)
    rest = (sc.kaplan, sc.log_n, sc.log_d, sc.log_l, f_n, f_log_l)
    start = time.perf_counter()
    new, _ = log_d_e_global(counts, *rest)
    batched = (time.perf_counter() - start) / draws
    start = time.perf_counter()
    old, _ = log_d_e_global_per_draw(counts[:baseline_draws], *rest)
    per_draw = (time.perf_counter() - start) / baseline_draws
    return batched, per_draw, float(np.nanmax(np.abs(new[:baseline_draws] - old)))


if __name__ == "__main__":
    main()
