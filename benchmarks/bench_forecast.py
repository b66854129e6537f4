"""Calibration of the forecasts and of leave-one-out: do a law's 95% prediction intervals hold the runs that come
after it?

Synthetic runs of a known law (Table 1's text->python transfer, k=1.9e4, alpha=0.18, beta=0.38, on a Kaplan or an
irreducible-loss from-scratch family; 3 N x 8 scratch D (1e4-1e11), 4 D_F (1e3-1e6); loss noise 0.1% or 0.5%) land
one at a time in a random order. After each landing the law fitted on the runs before it (if one could be fitted,
which needs >= 2 sizes) forecasts the new run (``forecast_run``, the function the refit writes with); then the law
is refitted on every landed run. Per cell: forecast coverage of the 95% prediction intervals, mean |z|, how many
landings had no forecast (and why); and leave-one-out coverage of the final law (``leave_one_out``, what each
version records). The fitter runs directly (no MLflow) for speed; ``tests/test_forecast.py`` covers the store path.
Targets (issue 23): forecast coverage 90-99%, LOO coverage 90-99%.

    python benchmarks/bench_forecast.py [--seeds 20] [--bootstrap 200] [--cells kaplan]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from _fit_synth import TEXT_TO_PYTHON, irreducible_loss, kaplan_loss, synthetic_runs

from transfer_laws.registry.fit import FitError, calibration, fit_transfer_law, forecast_run, leave_one_out

FAMILIES = {"kaplan": kaplan_loss, "irreducible": irreducible_loss}
GRID = {"n_grid": tuple(np.geomspace(1e6, 1e9, 3)), "scratch_d": tuple(np.geomspace(1e4, 1e11, 8)),
        "d_f": tuple(np.geomspace(1e3, 1e6, 4))}
NOISES = (0.001, 0.005)


def run_seed(family: str, noise: float, seed: int, bootstrap: int) -> tuple[list, list, Counter]:
    """One landing order: (forecasts, LOO forecasts of the final law, why landings had no forecast)."""
    runs = synthetic_runs(TEXT_TO_PYTHON, noise, seed=seed, loss_law=FAMILIES[family], **GRID)
    order = np.random.default_rng(seed + 1).permutation(len(runs))
    landed, law, forecasts, why = [], None, [], Counter()
    for i in order:
        run = runs[i]
        if law is None:
            why["no law yet"] += 1
        else:
            forecast = forecast_run(law, run)
            if forecast.reason:
                why[forecast.reason.split(":")[0]] += 1
            else:
                forecasts.append(forecast)
        landed.append(run)
        try:
            law = fit_transfer_law(landed, bootstrap=bootstrap, seed=seed)
        except FitError:
            pass  # the previous law (if any) stays @latest, as in the registry
    loo = leave_one_out(law, landed) if law is not None else {"runs": []}
    return forecasts, loo["runs"], why


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--cells", default="", help="only cells whose name (family/noise) contains this")
    args = parser.parse_args()
    print(f"# forecast calibration: {args.seeds} seeds per cell, {args.bootstrap} draws per fit; "
          f"{platform.machine()}, python {platform.python_version()}, numpy {np.__version__}, "
          f"load {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| family | noise | forecasts | inside | coverage | mean abs z | LOO runs | LOO inside | LOO coverage | "
          "LOO mean abs z | no forecast (why) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    pooled_f, pooled_l, started = [], [], time.time()
    for index, (family, noise) in enumerate((f, z) for f in FAMILIES for z in NOISES):
        if args.cells not in f"{family}/{noise:g}":
            continue
        cell_f, cell_l, why = [], [], Counter()
        for seed in range(1000 * index, 1000 * index + args.seeds):
            forecasts, loo, reasons = run_seed(family, noise, seed, args.bootstrap)
            cell_f += forecasts
            cell_l += [r for r in loo if not r["reason"]]
            why += reasons
        f, n_loo = calibration(cell_f), len(cell_l)
        loo_in = sum(r["inside"] for r in cell_l)
        loo_z = float(np.mean([abs(r["z"]) for r in cell_l])) if cell_l else float("nan")
        pooled_f += cell_f
        pooled_l += cell_l
        reasons = "; ".join(f"{c} {r}" for r, c in why.most_common())
        print(f"| {family} | {noise:.1%} | {f['n']} | {f['inside']} | {f['coverage'] or 0:.1%} | "
              f"{f['mean_abs_z'] or 0:.2f} | {n_loo} | {loo_in} | {loo_in / max(n_loo, 1):.1%} | {loo_z:.2f} | "
              f"{reasons} |", flush=True)
    f = calibration(pooled_f)
    loo_in = sum(r["inside"] for r in pooled_l)
    print(f"pooled: forecasts {f['inside']}/{f['n']} ({f['coverage'] or 0:.1%}, mean |z| {f['mean_abs_z'] or 0:.2f});"
          f" LOO {loo_in}/{len(pooled_l)} ({loo_in / max(len(pooled_l), 1):.1%}); {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
