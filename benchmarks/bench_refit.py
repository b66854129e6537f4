"""Refit latency on the embedded store, with and without plots: a run lands -> its law's new version is registered.

For each law size (runs already in the law) one store is filled once; then, ``repeats`` times, one more fine-tune
lands and ``refit_after_run`` (what the training command calls on the embedded store) runs without plots, then
another lands and it runs with plots (the default: SVG charts and the HTML page logged on the refit run). The two
paths alternate on the same store, so both see the same run count and the same machine load. Printed per size:
median and p95 of each path and the ratio plotted / unplotted (the issue asks for <= 1.5 at 1,000 runs), and the
median of each path against the smallest size (growth with the number of runs).

    .venv/bin/python benchmarks/bench_refit.py --sizes 100 1000 10000 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from law_runs import LAW, land_finetunes, land_run, land_scratch_runs

from transfer_laws.registry.refit import refit_after_run
from transfer_laws.registry.schema import ROLE_FINETUNE


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _timed_landing(client: object, exp: str, uri: str, i: int, plots: bool) -> float:
    """Seconds from one more fine-tune's landing to its law's new version."""
    run_id = land_run(client, exp, ROLE_FINETUNE, 1e6, 2e6 * (1 + 0.001 * i), 4.0, finish=False)
    start = time.perf_counter()
    client.set_terminated(run_id, "FINISHED")
    results = refit_after_run(run_id, tracking_uri=uri, plots=plots)
    elapsed = time.perf_counter() - start
    assert [r.status for r in results] == ["registered"], [(r.status, r.reason) for r in results]
    return elapsed


def measure(size: int, repeats: int) -> dict[bool, list[float]]:
    """Seconds from a landing to its registered version with ``size`` runs in the law, per plots setting."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as home:
        uri = f"sqlite:///{Path(home) / 'mlflow.db'}"
        os.environ["TRANSFER_LAWS_HOME"] = home
        client = MlflowClient(uri, uri)
        exp = client.create_experiment("runs", artifact_location=(Path(home) / "artifacts").as_uri())
        scratch = len(land_scratch_runs(client, exp))
        land_finetunes(client, exp, size - scratch)
        for i, plots in enumerate((False, True)):  # warm caches and imports of both paths
            _timed_landing(client, exp, uri, 10_000 + i, plots)
        times: dict[bool, list[float]] = {False: [], True: []}
        for i in range(repeats):
            for plots in (False, True):
                times[plots].append(_timed_landing(client, exp, uri, 2 * i + plots, plots))
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"law {LAW}; landing -> registered version, seconds (median / p95 over {args.repeats}), both paths "
          "alternating on one store per size")
    baseline: dict[bool, float] = {}
    for size in args.sizes:
        times = measure(size, args.repeats)
        median = {plots: statistics.median(t) for plots, t in times.items()}
        for plots in (False, True):
            baseline.setdefault(plots, median[plots])
        print(f"runs={size:6d}  no plots {median[False]:6.2f} (p95 {_p95(times[False]):6.2f})  "
              f"plots {median[True]:6.2f} (p95 {_p95(times[True]):6.2f})  "
              f"plots/no plots x{median[True] / median[False]:4.2f}  "
              f"growth vs runs={args.sizes[0]}: x{median[False] / baseline[False]:5.2f} / "
              f"x{median[True] / baseline[True]:5.2f}", flush=True)


if __name__ == "__main__":
    main()
