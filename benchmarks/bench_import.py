"""What installing the plugin adds to ``import mlflow`` (target: at most 50 ms).

MLflow imports every ``mlflow.run_context_provider`` entry point during ``import mlflow``. Each repeat starts a fresh
interpreter twice, alternating: once as installed (baseline: our entry points hidden from MLflow by filtering
``importlib.metadata.entry_points`` before the import) and once with them. Both time ``import mlflow`` plus one
``resolve_tags`` (what every run start pays). Prints both medians, the added milliseconds and the ratio.

    python benchmarks/bench_import.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys

PROBE = """
import importlib.metadata as md, time
if {hide}:
    _original = md.entry_points
    def _without_ours(*args, **kwargs):
        found = _original(*args, **kwargs)
        if kwargs.get("group"):
            return md.EntryPoints(ep for ep in found if not ep.value.startswith("transfer_laws."))
        return found
    md.entry_points = _without_ours
start = time.perf_counter()
import mlflow
from mlflow.tracking.context.registry import resolve_tags
tags = resolve_tags({{}})
print(time.perf_counter() - start)
"""


def _once(hide: bool) -> float:
    done = subprocess.run([sys.executable, "-c", PROBE.format(hide=hide)], capture_output=True, text=True,
                          check=True, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    _once(True), _once(False)  # warm the OS file cache for both
    without, with_plugin = [], []
    for _ in range(args.repeats):
        without.append(_once(True))
        with_plugin.append(_once(False))
    base, ours = statistics.median(without), statistics.median(with_plugin)
    print(f"python {platform.python_version()}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}, "
          f"{args.repeats} alternating repeats")
    print(f"import mlflow + resolve_tags, plugin hidden: median {base * 1e3:.0f} ms (min {min(without) * 1e3:.0f})")
    print(f"import mlflow + resolve_tags, plugin loaded: median {ours * 1e3:.0f} ms (min {min(with_plugin) * 1e3:.0f})")
    added_min = (min(with_plugin) - min(without)) * 1e3
    print(f"added by the plugin: {(ours - base) * 1e3:+.0f} ms median, {added_min:+.0f} ms min; "
          f"ratio {ours / base:.3f} (target: <= 50 ms added)")


if __name__ == "__main__":
    main()
