"""Bursts on the real stack: N runs end at once over REST; how many versions, and how soon one covers them all.

Needs the server stack of ``.ci/services.sh`` (PostgreSQL, S3 over HTTP, ``mlflow server --app-name transfer-laws``
with its run-landed hook, one worker):

    . .ci/services.sh && trap services_stop EXIT && services_start && .venv/bin/python benchmarks/bench_burst.py

Per burst size a law of its own gets its scratch curves and 12 fine-tunes written straight into the backend store
(no REST call, so no refit), then N more fine-tunes are created there unfinished and ended over REST by 8 client
threads at once, which is what triggers the server's refits. Reported: the versions the burst created, and the
seconds from the last landing's response to the creation of the first version whose input digest covers every
run of the law (the server stamps the version; server and client share this machine's clock). The baseline,
measured in the same run, is one landing on its own: the burst's latency is printed as a ratio to it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from law_runs import finetune_grid, finetune_loss, land_finetunes, land_run, land_scratch_runs

from transfer_laws.registry.refit import TAG_INPUTS_DIGEST
from transfer_laws.registry.schema import ROLE_FINETUNE, law_model_name


def _digest(run_ids: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(set(run_ids))).encode()).hexdigest()


def _versions(client: Any, law: str) -> list[Any]:
    return client.search_model_versions(f"name = '{law_model_name(law)}'")


def _covering(client: Any, law: str, digest: str, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        hit = [v for v in _versions(client, law) if v.tags.get(TAG_INPUTS_DIGEST) == digest]
        if hit:
            return min(hit, key=lambda v: int(v.version))
        time.sleep(0.1)
    raise TimeoutError(f"no version of {law} covered its runs within {timeout_s:.0f} s")


def _quiet(client: Any, law: str, quiet_s: float) -> int:
    seen, since = -1, time.monotonic()
    while time.monotonic() - since < quiet_s:
        count = len(_versions(client, law))
        if count != seen:
            seen, since = count, time.monotonic()
        time.sleep(0.5)
    return seen


def burst(server: Any, direct: Any, size: int, quiet_s: float) -> tuple[int, float]:
    """(versions the burst created, seconds from its last landing to the covering version)."""
    law = f"text-to-b{uuid.uuid4().hex[:8]}"
    experiment = server.create_experiment(f"burst-{law}")
    seeded = land_scratch_runs(direct, experiment, law=law) + land_finetunes(direct, experiment, 12, law=law)
    points = [(n, d_f * (1.5 + i / size)) for i, (n, d_f) in enumerate(finetune_grid(size))]  # new (N, D_F) pairs
    pending = [land_run(direct, experiment, ROLE_FINETUNE, n, d, finetune_loss(n, d), law=law, finish=False)
               for n, d in points]
    before = len(_versions(server, law))

    def end(run_id: str) -> float:
        server.set_terminated(run_id, "FINISHED")
        return time.time()

    with ThreadPoolExecutor(8) as pool:
        last = max(pool.map(end, pending))
    version = _covering(server, law, _digest(seeded + pending), timeout_s=600)
    latency = version.creation_timestamp / 1000 - last
    return _quiet(server, law, quiet_s) - before, latency


def main() -> None:
    from mlflow import MlflowClient

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--quiet", type=float, default=15.0, help="seconds without a new version that end a burst")
    parser.add_argument("--tracking-uri", default=os.environ.get("TL_TEST_SERVER_URI"))
    parser.add_argument("--backend-uri", default=os.environ.get("TL_MLFLOW_BACKEND_URI"))
    args = parser.parse_args()
    if not (args.tracking_uri and args.backend_uri):
        parser.error("start the stack first (. .ci/services.sh; services_start) or pass --tracking-uri/--backend-uri")
    server = MlflowClient(args.tracking_uri, args.tracking_uri)
    direct = MlflowClient(args.backend_uri, args.backend_uri)
    print(f"server {args.tracking_uri}; cores {os.cpu_count()}; load {os.getloadavg()[0]:.2f}", flush=True)
    _, baseline = burst(server, direct, 1, args.quiet)
    print(f"baseline: one landing -> covering version {baseline:.2f} s", flush=True)
    for size in args.sizes:
        for _ in range(args.repeats):
            created, latency = burst(server, direct, size, args.quiet)
            print(f"burst of {size:4d}: {created} version(s) created, last landing -> covering version "
                  f"{latency:5.2f} s (x{latency / baseline:.2f} of one landing); load {os.getloadavg()[0]:.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
