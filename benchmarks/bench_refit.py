"""Refit latency on the embedded store: a run lands -> its law's new version is registered.

For each law size (runs already in the law) we land one more fine-tune and time ``refit_after_run`` (what the
training command calls on the embedded store) until the version exists, several times; printed as median and
p95, and as a ratio to the smallest size measured in the same run (growth with the number of runs). Two settings:
the default refit (bootstrap 1000 with plots) and the latency setting (bootstrap 1000, no plots).

    .venv/bin/python benchmarks/bench_refit.py --sizes 100 1000 --repeats 5
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

from law_runs import LAW, land_finetunes, land_run, land_scratch_runs  # noqa: E402

from transfer_laws.registry.refit import refit_after_run  # noqa: E402
from transfer_laws.registry.schema import ROLE_FINETUNE  # noqa: E402


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def measure(size: int, repeats: int, plots: bool) -> list[float]:
    """Seconds from a landing to its registered version, ``repeats`` times, with ``size`` runs in the law."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as home:
        uri = f"sqlite:///{Path(home) / 'mlflow.db'}"
        os.environ["TRANSFER_LAWS_HOME"] = home
        client = MlflowClient(uri, uri)
        exp = client.create_experiment("runs", artifact_location=(Path(home) / "artifacts").as_uri())
        scratch = len(land_scratch_runs(client, exp))
        land_finetunes(client, exp, size - scratch)
        refit_after_run(land_finetunes(client, exp, 1)[0], tracking_uri=uri, plots=plots)  # warm caches
        times = []
        for i in range(repeats):
            run_id = land_run(client, exp, ROLE_FINETUNE, 1e6, 2e6 * (1 + 0.001 * i), 4.0, finish=False)
            start = time.perf_counter()
            client.set_terminated(run_id, "FINISHED")
            results = refit_after_run(run_id, tracking_uri=uri, plots=plots)
            times.append(time.perf_counter() - start)
            assert [r.status for r in results] == ["registered"], [(r.status, r.reason) for r in results]
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-default", action="store_true", help="skip the default (with plots) setting")
    args = parser.parse_args()
    settings = [("no plots", False)] + ([] if args.no_default else [("default", True)])
    print(f"law {LAW}; landing -> registered version, seconds (median / p95 over {args.repeats})")
    for label, plots in settings:
        baseline = None
        for size in args.sizes:
            times = measure(size, args.repeats, plots)
            median = statistics.median(times)
            baseline = baseline or median
            print(f"{label:9s} runs={size:6d}  median {median:6.2f}  p95 {_p95(times):6.2f}  "
                  f"x{median / baseline:5.2f} of runs={args.sizes[0]}", flush=True)


if __name__ == "__main__":
    main()
