"""The law page and ``/api/laws`` at many laws: one client, then many at once, on a real ``mlflow server``.

A store of its own (SQLite, local artifacts) gets ``--laws`` laws, each with its fine-tunes (sharing one target's
scratch curves) and one registered version (refitted before the server starts, so its start sweep finds nothing to
do). Then ``mlflow server --app-name transfer-laws`` serves it and we time:

- the first page request (cold: every law's view and fit read from the store once),
- the page and the API for one client, warm (median of ``--repeats``),
- ``--clients`` clients at once, each fetching the page ``--repeats`` times: the median and p95 per request, and
  the ratio of that median to the single-client median (what concurrency costs on this machine).

    .venv/bin/python benchmarks/bench_page.py --laws 100 --clients 20 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _servers import free_port
from law_runs import land_finetunes, land_scratch_runs


def _fill(uri: str, laws: int, artifacts: Path) -> None:
    from mlflow import MlflowClient

    from transfer_laws.registry.refit import refit_law

    client = MlflowClient(uri, uri)
    experiment = client.create_experiment("runs", artifact_location=artifacts.as_uri())
    land_scratch_runs(client, experiment, law="s0-to-python")
    start = time.perf_counter()
    for i in range(laws):
        law = f"s{i}-to-python"
        land_finetunes(client, experiment, 12, law=law)
        result = refit_law(law, tracking_uri=uri, bootstrap=50, plots=False)
        assert result.status == "registered", (law, result.reason)
    print(f"filled {laws} laws (12 fine-tunes each, one version) in {time.perf_counter() - start:.0f} s")


def _get(url: str) -> tuple[float, int]:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as reply:  # our own local server
        size = len(reply.read())
    return time.perf_counter() - start, size


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--laws", type=int, default=100)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        db, artifacts = Path(home) / "mlflow.db", Path(home) / "artifacts"
        uri = f"sqlite:///{db}"
        os.environ["TRANSFER_LAWS_HOME"] = home
        _fill(uri, args.laws, artifacts)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "_MLFLOW_SERVER"))}
        cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--app-name", "transfer-laws", "--host",
               "127.0.0.1", "--port", str(port), "--workers", "1", "--backend-store-uri", uri,
               "--default-artifact-root", artifacts.as_uri()]
        log = Path(home) / "server.log"
        with log.open("w") as out:
            server = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    _get(f"{base}/health")
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"server did not start:\n{log.read_text()[-3000:]}") from None
                    time.sleep(0.5)
            page, api = f"{base}/transfer-laws/", f"{base}/transfer-laws/api/laws"
            cold, size = _get(page)
            print(f"page, cold (first request reads {args.laws} laws): {cold:.2f} s, {size / 1e3:.0f} kB")
            single = [_get(page)[0] for _ in range(args.repeats)]
            api_single = [_get(api)[0] for _ in range(args.repeats)]
            api_size = _get(api)[1]
            print(f"page, 1 client, warm: median {statistics.median(single):.3f} s (p95 {_p95(single):.3f} s)")
            print(f"/api/laws, 1 client, warm: median {statistics.median(api_single):.3f} s, "
                  f"{api_size / 1e3:.0f} kB")
            with ThreadPoolExecutor(args.clients) as pool:
                many = [t for t, _ in pool.map(_get, [page] * (args.clients * args.repeats))]
            ratio = statistics.median(many) / statistics.median(single)
            print(f"page, {args.clients} clients at once: median {statistics.median(many):.3f} s per request "
                  f"(p95 {_p95(many):.3f} s), {ratio:.1f}x the single-client median")
        finally:
            server.terminate()
            server.wait(60)


if __name__ == "__main__":
    main()
