"""Calibration of the fitter's estimates and 95% intervals on synthetic runs from known laws.

Cells: two from-scratch families (the Kaplan form; a form with an irreducible loss, L = E + A/N^a + B/D^b) x two
grids (dense: 5 N x 25 scratch D, 4 D_F; sparse: 3 N x 6 scratch D, 3 D_F) x two loss-noise levels (0.1%, 0.5%),
``--seeds`` seeds each, the transfer law being Table 1's text->python (k=1.9e4, alpha=0.18, beta=0.38). Per cell:
alpha and beta RMSE over seeds, coverage of the 95% intervals, and the median interval width divided by the ideal
width 2 x 1.96 x RMSE (what a calibrated interval of an unbiased estimate would have); also which scratch model
``auto`` chose. Targets (issue 13): every cell alpha RMSE <= 0.03 and beta <= 0.06; pooled coverage 90-99%;
median width <= 1.5x ideal.

Bending cells (issue 29): the same law below a bend at D_F = d_b, past which D_T falls under the power law, in two
shapes (``smooth``: the slope falls by 0.3 over about two decades; ``cutoff``: D_T x exp(-D_F / d_b)) at two
positions on the D_F grid (``mid``: its geometric middle; ``late``: 90% of the way up in ln D_F), Kaplan scratch
curves, both grids, 0.2% noise. Per cell also: how often the fit cut points past the low-data regime and how often
it warned about the law's form or regime. Targets: on every bending cell alpha's 95% interval covers the low-data
alpha (0.18) in >= 90% of seeds or the fit warns in >= 90%; on the straight cells it warns in <= 5%.

    python benchmarks/bench_calibration.py [--seeds 30] [--bootstrap 1000] [--method auto] [--cells dense]
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
from _fit_synth import TEXT_TO_PYTHON, cutoff_bend, irreducible_loss, kaplan_loss, smooth_bend, synthetic_runs

from transfer_laws.registry.fit import FitError, fit_transfer_law

FAMILIES = {"kaplan": kaplan_loss, "irreducible": irreducible_loss}
GRIDS = {
    "dense": {"n_grid": tuple(np.geomspace(1e6, 1e9, 5)), "scratch_d": tuple(np.geomspace(1e3, 1e13, 25)),
              "d_f": tuple(np.geomspace(1e3, 1e6, 4))},
    "sparse": {"n_grid": tuple(np.geomspace(1e6, 1e9, 3)), "scratch_d": tuple(np.geomspace(1e4, 1e11, 6)),
               "d_f": tuple(np.geomspace(1e3, 1e6, 3))},
}
NOISES = (0.001, 0.005)
Z95 = 1.96
BEND_SHAPES = {"smooth": smooth_bend, "cutoff": cutoff_bend}
BEND_POSITIONS = {"mid": 0.5, "late": 0.9}
"""Where the bend sits, as a share of the D_F grid's span in ln D_F."""
BEND_NOISE = 0.002


def bend_at(grid: str, position: str) -> float:
    d_f = GRIDS[grid]["d_f"]
    return float(d_f[0] * (d_f[-1] / d_f[0]) ** BEND_POSITIONS[position])


def regime_warned(warnings: list[str]) -> bool:
    """Whether the fit warned about the law's form or its low-data regime (the issue-29 check)."""
    return any("law's form" in w or "low-data regime" in w for w in warnings)


def run_cell(family: str, grid: str, noise: float, seeds: int, bootstrap: int, method: str, first_seed: int,
             heavy_tails: bool, bend: str = "") -> dict[str, object]:
    """Fit every seed of one cell (``bend``: shape-position, "" for the straight law); returns its statistics."""
    truth = {"alpha": TEXT_TO_PYTHON[1], "beta": TEXT_TO_PYTHON[2]}
    est: dict[str, list[float]] = {"alpha": [], "beta": []}
    cover: dict[str, int] = {"alpha": 0, "beta": 0}
    width: dict[str, list[float]] = {"alpha": [], "beta": []}
    chosen: Counter[str] = Counter()
    failed = warned = cut = either = 0
    shape = bend.split("-")
    factor = BEND_SHAPES[shape[0]](bend_at(grid, shape[1])) if bend else None
    for seed in range(first_seed, first_seed + seeds):
        runs = synthetic_runs(TEXT_TO_PYTHON, noise, seed=seed, loss_law=FAMILIES[family], heavy_tails=heavy_tails,
                              bend=factor, **GRIDS[grid])
        try:
            law = fit_transfer_law(runs, d_e_method=method, bootstrap=bootstrap, seed=seed)
        except FitError:
            failed += 1
            continue
        checks = getattr(law, "checks", None) or {}
        chosen[checks.get("estimator", method)] += 1
        warned += regime_warned(law.warnings)
        low, high = law.intervals["alpha"]
        either += int(regime_warned(law.warnings) or low <= truth["alpha"] <= high)
        cut += int((checks.get("regime") or {}).get("excluded_past_regime", 0) > 0)
        for name in ("alpha", "beta"):
            low, high = law.intervals[name]
            est[name].append(getattr(law, name))
            cover[name] += int(low <= truth[name] <= high)
            width[name].append(high - low)
    out: dict[str, object] = {"family": family, "grid": grid, "noise": noise, "fits": seeds - failed,
                              "chosen": dict(chosen), "warned": warned, "cut": cut, "bend": bend or "none",
                              "either": either}
    for name in ("alpha", "beta"):
        e = np.array(est[name])
        rmse = float(np.sqrt(np.mean((e - truth[name]) ** 2))) if e.size else float("nan")
        out[f"{name}_rmse"] = rmse
        out[f"{name}_bias"] = float(np.mean(e - truth[name])) if e.size else float("nan")
        out[f"{name}_cover"] = cover[name]
        out[f"{name}_width_ratio"] = float(np.median(width[name]) / (2 * Z95 * rmse)) if e.size else float("nan")
    return out


def _row(c: dict[str, object], head: str) -> str:
    fits = int(c["fits"])
    chosen = ", ".join(f"{k} {v}" for k, v in sorted(c["chosen"].items()))
    return (f"| {head} | {fits} | {c['alpha_rmse']:.4f} | {c['beta_rmse']:.4f} | {c['alpha_bias']:+.4f} | "
            f"{c['beta_bias']:+.4f} | {c['alpha_cover']}/{fits} | {c['beta_cover']}/{fits} | "
            f"{c['alpha_width_ratio']:.2f} | {c['beta_width_ratio']:.2f} | {c['cut']}/{fits} | {c['warned']}/{fits} | "
            f"{chosen} |")


COLUMNS = ("fits | alpha RMSE | beta RMSE | alpha bias | beta bias | alpha cover | beta cover | alpha width/ideal | "
           "beta width/ideal | cut past regime | regime/form warns | chosen |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--method", default="auto")
    parser.add_argument("--cells", default="", help="only cells whose name (family/grid/noise, or shape-position/grid "
                        "for bending cells) contains this")
    parser.add_argument("--only", choices=("straight", "bending"), help="only the straight or only the bending cells")
    parser.add_argument("--heavy-tails", action="store_true", help="Student-t (3 dof) loss noise, not Gaussian")
    args = parser.parse_args()
    noise_kind = "Student-t(3)" if args.heavy_tails else "Gaussian"
    print(f"# calibration: method {args.method}, {args.seeds} seeds per cell, {args.bootstrap} draws, {noise_kind} "
          "noise; "
          f"{platform.machine()}, python {platform.python_version()}, numpy {np.__version__}, "
          f"load {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    pooled = {"alpha": 0, "beta": 0, "n": 0, "warned": 0}
    started = time.time()
    if args.only != "bending":
        print("| family | grid | noise | " + COLUMNS)
        print("|---" * 15 + "|")
        cells = [(f, g, z) for f in FAMILIES for g in GRIDS for z in NOISES]
        for index, (family, grid, noise) in enumerate(cells):
            if args.cells in f"{family}/{grid}/{noise:g}":
                # Seeds differ between cells, so no two cells share a noise pattern (scaled or not).
                c = run_cell(family, grid, noise, args.seeds, args.bootstrap, args.method, 1000 * index,
                             args.heavy_tails)
                for key in ("alpha", "beta", "warned"):
                    pooled[key] += int(c[f"{key}_cover"] if key != "warned" else c[key])
                pooled["n"] += int(c["fits"])
                print(_row(c, f"{family} | {grid} | {noise:.1%}"), flush=True)
        n = max(pooled["n"], 1)
        print(f"pooled coverage: alpha {pooled['alpha']}/{pooled['n']} ({pooled['alpha'] / n:.1%}), "
              f"beta {pooled['beta']}/{pooled['n']} ({pooled['beta'] / n:.1%}); regime/form warnings "
              f"{pooled['warned']}/{pooled['n']} ({pooled['warned'] / n:.1%}); {time.time() - started:.0f} s")
    if args.only != "straight":
        print(f"\nbending laws (kaplan scratch curves, {BEND_NOISE:.1%} noise; alpha cover: of the low-data alpha)")
        print("| bend | d_b | grid | " + COLUMNS + " target | seeds covered or warned |")
        print("|---" * 17 + "|")
        cells_b = [(f"{shape}-{pos}", g) for shape in BEND_SHAPES for pos in BEND_POSITIONS for g in GRIDS]
        for index, (bend, grid) in enumerate(cells_b):
            if args.cells in f"{bend}/{grid}":
                c = run_cell("kaplan", grid, BEND_NOISE, args.seeds, args.bootstrap, args.method,
                             100_000 + 1000 * index, args.heavy_tails, bend=bend)
                fits = max(int(c["fits"]), 1)
                met = max(int(c["alpha_cover"]), int(c["warned"])) >= 0.9 * fits
                print(_row(c, f"{bend} | {bend_at(grid, bend.split('-')[1]):.3g} | {grid}")
                      + f" {'met' if met else 'MISSED'} | {c['either']}/{fits} |", flush=True)
        print(f"{time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
