"""What the transfer map costs: the law page with and without its map block, and a refit with and without the update
of the target's map run, on the embedded store holding two laws of one target (tests/two_laws.py).

Each pair alternates on the same store and the same warm fit cache, so both sides see the same machine load; printed:
median of each side and the ratio with / without.

    .venv/bin/python benchmarks/bench_map.py --repeats 7 --refits 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from law_runs import finetune_loss, land_run
from two_laws import TARGET, build_store

from transfer_laws.plugin import page as page_module
from transfer_laws.plugin import page_map
from transfer_laws.registry import refit as refit_module
from transfer_laws.registry.schema import ROLE_FINETUNE


def _median_ms(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="page renders per side")
    parser.add_argument("--refits", type=int, default=3, help="registering refits per side")
    args = parser.parse_args()
    import mlflow
    from flask import Flask

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        os.environ["TRANSFER_LAWS_HOME"] = tmp
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        start = time.perf_counter()
        built = build_store(uri, bootstrap=1000)
        print(f"store: two laws of {TARGET}, 12 fine-tunes each, 27 scratch runs; built and refitted in "
              f"{time.perf_counter() - start:.1f} s")
        app = Flask("bench")
        page_module.register_law_page(app, tracking_uri=uri)
        web = app.test_client()
        web.get("/transfer-laws/")  # warm the fit cache
        real = page_module.map_sections
        warm = _median_ms(lambda: web.get("/transfer-laws/"), args.repeats)
        cold = _median_ms(lambda: (page_map._cache.clear(), web.get("/transfer-laws/")), args.repeats)
        page_module.map_sections = lambda *a, **k: []
        without = _median_ms(lambda: web.get("/transfer-laws/"), args.repeats)
        page_module.map_sections = real
        real_update = refit_module.update_target_map
        print(f"law page: {cold:.0f} ms with the map built, {warm:.0f} ms with it reused, {without:.0f} ms without; "
              f"ratios {cold / without:.2f} and {warm / without:.2f}")
        times: dict[bool, list[float]] = {True: [], False: []}
        for i in range(args.refits):
            for update in (False, True):  # alternate: both sides see the same run count and load
                land_run(built["client"], built["exp"], ROLE_FINETUNE, 1e6, 2e5 * (1 + 0.01 * i + 0.005 * update),
                         finetune_loss(1e6, 2e5), law=f"text-to-{TARGET}")
                refit_module.update_target_map = real_update if update else (lambda *a, **k: None)
                start = time.perf_counter()
                result = refit_module.refit_law(f"text-to-{TARGET}", tracking_uri=uri, plots=True)
                times[update].append(1000 * (time.perf_counter() - start))
                assert result.status == "registered", result
        refit_module.update_target_map = real_update
        on, off = statistics.median(times[True]), statistics.median(times[False])
        print(f"registering refit (1,000 draws, plots): {on:.0f} ms with the map run's update, {off:.0f} ms "
              f"without; ratio {on / off:.2f}")
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


if __name__ == "__main__":
    main()
