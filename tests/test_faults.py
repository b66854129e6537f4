"""Faults on the real stack (PostgreSQL, S3 over HTTP, ``mlflow server --app-name transfer-laws``): a hostile Host
header, poisoned runs and model names, oversized and forged deliveries, racing refits with and without the shared
lock, and a server killed right after a run landed. None may leak, block or lose a
refit."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from law_runs import DIGEST, LAW, finetune_grid, finetune_loss, land_finetunes, land_run, land_scratch_runs
from mlflow import MlflowClient

from transfer_laws.plugin.webhooks import MAX_BODY_BYTES, ROUTE, signature
from transfer_laws.registry.schema import (
    INPUTS_ARTIFACT,
    ROLE_FINETUNE,
    TAG_INPUTS_DIGEST,
    TAG_LAW,
    TAG_ROLE,
    TAG_TOKENIZER,
    law_model_name,
)

_CALL = "refit_law(sys.argv[1], tracking_uri=sys.argv[2], bootstrap=int(sys.argv[3]), plots=False).status"
REFIT = f"import sys;from transfer_laws.registry.refit import refit_law;print({_CALL})"
"""A refit in a process of its own: ``python -c REFIT <law> <tracking uri> <bootstrap draws>``."""
REFIT_LOOP = f"import sys;from transfer_laws.registry.refit import refit_law;[print({_CALL}) for _ in range(6)]"


def _law() -> str:
    return f"text-to-f{uuid.uuid4().hex[:8]}"


def _versions(client: MlflowClient, law: str) -> list[Any]:
    return sorted(client.search_model_versions(f"name = '{law_model_name(law)}'"), key=lambda v: int(v.version))


def _read_set(client: MlflowClient, version: Any) -> set[str]:
    """Every run id the version's refit read: used, or excluded by the reader."""
    with tempfile.TemporaryDirectory() as tmp:
        report = json.loads(Path(client.download_artifacts(version.run_id, INPUTS_ARTIFACT, tmp)).read_text())
    return set(report["read_run_ids"]) | set(report["excluded_by_reader"])


def _wait_covered(client: MlflowClient, law: str, run_ids: list[str], timeout_s: float = 240) -> Any:
    """The first version whose read set includes ``run_ids``; fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for version in reversed(_versions(client, law)):
            if set(run_ids) <= _read_set(client, version):
                return version
        time.sleep(0.5)
    raise AssertionError(f"no version of {law} covers {len(run_ids)} runs after {timeout_s} s")


def _quiet(client: MlflowClient, law: str, quiet_s: float = 10) -> list[Any]:
    seen, since = None, time.monotonic()
    while True:
        now = [v.version for v in _versions(client, law)]
        if now != seen:
            seen, since = now, time.monotonic()
        elif time.monotonic() - since > quiet_s:
            return _versions(client, law)
        time.sleep(1)


def _assert_versions_sound(client: MlflowClient, law: str) -> list[set[str]]:
    """No input set registered twice, and (runs only ever land here) no version reads fewer runs than one before."""
    versions = _versions(client, law)
    digests = [v.tags[TAG_INPUTS_DIGEST] for v in versions]
    assert len(digests) == len(set(digests)), f"an input set registered twice: {digests}"
    sets = [_read_set(client, v) for v in versions]
    for i in range(1, len(sets)):
        dropped = sets[i - 1] - sets[i]
        assert not dropped, f"v{versions[i].version} dropped runs v{versions[i - 1].version} read: {sorted(dropped)}"
    return sets


@pytest.fixture
def seeded(server_stack) -> dict[str, Any]:
    """A law of its own with its scratch curves and 12 fine-tunes, written straight into the backend store (no
    REST call, so the hook refits nothing yet)."""
    uri = server_stack.tracking_uri
    client = MlflowClient(uri, uri)
    law = _law()
    experiment = client.create_experiment(f"runs-{law}")
    backend = os.environ["TL_MLFLOW_BACKEND_URI"]
    direct = MlflowClient(backend, backend)
    land_scratch_runs(direct, experiment, law=law)
    land_finetunes(direct, experiment, 12, law=law)
    return {"uri": uri, "client": client, "law": law, "experiment": experiment, "direct": direct}


class _Listener:
    """An HTTP listener on 127.0.0.1 that records every request line and header it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.received.append(conn.recv(65536))
                    conn.sendall(b"HTTP/1.1 500 no\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[_Listener]:
    trap = _Listener()
    yield trap
    trap.close()


@pytest.mark.server
def test_a_hostile_host_header_sends_the_refit_nowhere_but_the_server(seeded: dict[str, Any],
                                                                       listener: _Listener) -> None:
    import requests

    client, law, uri = seeded["client"], seeded["law"], seeded["uri"]
    ended = []
    for port in (listener.port, listener.port):  # the same hostile host twice, and many others below
        run_id = land_run(client, seeded["experiment"], ROLE_FINETUNE, 1e6, 4e6 + len(ended), 3.0, law=law,
                          finish=False)
        reply = requests.post(f"{uri}/api/2.0/mlflow/runs/update", json={"run_id": run_id, "status": "FINISHED"},
                              headers={"Host": f"127.0.0.1:{port}"}, timeout=30)
        assert reply.status_code == 200, reply.text
        ended.append(run_id)
    for i in range(20):  # on the old code every Host started a refit service (and a thread) of its own
        requests.post(f"{uri}/api/2.0/mlflow/runs/update", json={"run_id": ended[0], "status": "FINISHED"},
                      headers={"Host": f"127.0.0.{i + 2}:{listener.port}"}, timeout=30)
    _wait_covered(client, law, ended)
    assert listener.received == [], listener.received[:1]


@pytest.mark.server
def test_a_poisoned_run_and_crafted_model_names_block_nothing(seeded: dict[str, Any]) -> None:
    from mlflow.entities import Param

    from transfer_laws.registry.watch import watch

    client, law, uri = seeded["client"], seeded["law"], seeded["uri"]
    for name in ("transfer-law-nodash", "transfer-law-q'uote-to-python"):
        try:
            client.create_registered_model(name)
        except Exception:  # created by an earlier test of this session
            pass
    poisoned = client.create_run(seeded["experiment"]).info.run_id
    client.log_batch(poisoned, params=[Param("N", "inf"), Param("D_F_tokens", "1e400")])
    for key, value in {TAG_ROLE: ROLE_FINETUNE, TAG_LAW: law, TAG_TOKENIZER: DIGEST}.items():
        client.set_tag(poisoned, key, value)
    client.log_metric(poisoned, "best_test_loss", 3.0)
    client.set_terminated(poisoned, "FINISHED")  # over REST: the hook refits
    good = land_run(client, seeded["experiment"], ROLE_FINETUNE, 1e6, 5e6, finetune_loss(1e6, 5e6), law=law)

    version = _wait_covered(client, law, [poisoned, good])
    with tempfile.TemporaryDirectory() as tmp:
        report = json.loads(Path(client.download_artifacts(version.run_id, INPUTS_ARTIFACT, tmp)).read_text())
    assert "finite" in report["excluded_by_reader"][poisoned] and good in report["input_run_ids"]
    for path in ("/transfer-laws/", "/transfer-laws/api/laws"):
        with urllib.request.urlopen(uri + path, timeout=60) as page:  # test server
            assert page.status == 200
            body = page.read().decode()
        assert law in body
    laws = json.loads(urllib.request.urlopen(uri + "/transfer-laws/api/laws", timeout=60).read())["laws"]
    assert {v["law"] for v in laws} >= {law}
    results = watch(uri, interval_s=0, max_iterations=1, bootstrap=20, plots=False)
    assert all(r.law != "q'uote-to-python" for r in results)


def _raw(uri: str, head: str, body: bytes = b"", read_timeout_s: float = 20) -> int:
    """Send a raw request (headers, then ``body``, never more) and return the status the server answers."""
    host, port = uri.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=read_timeout_s) as conn:
        conn.sendall(head.encode() + body)
        reply = conn.recv(4096)
    return int(reply.split(b" ", 2)[1])


@pytest.mark.server
def test_oversized_and_forged_deliveries_are_refused_before_the_body_is_read(server_stack) -> None:
    uri, secret = server_stack.tracking_uri, os.environ["TL_WEBHOOK_SECRET"]
    stamp, delivery = str(int(time.time())), str(uuid.uuid4())
    small = b'{"entity": "model_version", "action": "created", "data": {}}'
    signed = (f"X-MLflow-Delivery-Id: {delivery}\r\nX-MLflow-Timestamp: {stamp}\r\n"
              f"X-MLflow-Signature: {signature(secret, delivery, stamp, small)}\r\n")
    host = uri.removeprefix("http://")  # a Host MLflow's own DNS-rebinding check lets through
    head = f"POST {ROUTE} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{signed}"
    # Claims 1 GB and sends 1 KB: the answer comes without the rest (the old code waited for, then buffered, it all).
    assert _raw(uri, head + f"Content-Length: {10**9}\r\n\r\n", b"x" * 1024) == 413
    unsigned = f"POST {ROUTE} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {10**9}\r\n\r\n"
    assert _raw(uri, unsigned, b"x" * 1024) == 401
    # Chunked, no length declared: cut off once past the limit.
    chunk = b"x" * (MAX_BODY_BYTES // 4)
    chunks = b"".join(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(6))
    assert _raw(uri, head + "Transfer-Encoding: chunked\r\n\r\n", chunks) == 413
    forged = head.replace(signature(secret, delivery, stamp, small), signature("guess", delivery, stamp, small))
    assert _raw(uri, forged + f"Content-Length: {len(small)}\r\n\r\n", small) == 401
    assert _raw(uri, head + f"Content-Length: {len(small)}\r\n\r\n", small) == 200  # genuine (nothing to refit)
    assert _raw(uri, head + f"Content-Length: {len(small)}\r\n\r\n", small) == 403  # the same id again


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.parametrize("shared_lock", [False, True], ids=["no-lock", "db-lock"])
def test_racing_refits_never_register_twice_or_go_backwards(seeded: dict[str, Any], shared_lock: bool) -> None:
    """Two refitting processes loop while runs keep landing (written to the store directly, so only they refit)."""
    client, law, uri, direct = seeded["client"], seeded["law"], seeded["uri"], seeded["direct"]
    env = {k: v for k, v in os.environ.items() if k != "TRANSFER_LAWS_LOCK_DB"}
    if shared_lock:
        env["TRANSFER_LAWS_LOCK_DB"] = os.environ["TL_MLFLOW_BACKEND_URI"]
    procs = [subprocess.Popen([sys.executable, "-c", REFIT_LOOP, law, uri, "20"], env=env) for _ in range(2)]
    landed = []
    for n, d_f in finetune_grid(30)[12:]:  # 18 more, while the two refit
        landed.append(land_run(direct, seeded["experiment"], ROLE_FINETUNE, n, d_f * 1.5, finetune_loss(n, d_f * 1.5),
                               law=law))
        time.sleep(0.3)
    for proc in procs:
        assert proc.wait(timeout=600) == 0
    final = subprocess.run([sys.executable, "-c", REFIT, law, uri, "20"], env=env, capture_output=True, text=True,
                           timeout=300, check=True)
    assert final.stdout.strip().splitlines()[-1] in ("registered", "unchanged")
    sets = _assert_versions_sound(client, law)
    assert set(landed) <= sets[-1]


@pytest.mark.server
def test_a_law_whose_runs_land_faster_than_a_refit_still_gets_versions(seeded: dict[str, Any]) -> None:
    from transfer_laws.registry.refit import refit_law

    client, law, uri, direct = seeded["client"], seeded["law"], seeded["uri"], seeded["direct"]
    stop = threading.Event()

    def keep_landing() -> None:  # straight into the store, every 0.1 s, until the refit is done
        for n, d_f in finetune_grid(400)[12:]:
            if stop.is_set():
                return
            land_run(direct, seeded["experiment"], ROLE_FINETUNE, n, d_f * 1.7, finetune_loss(n, d_f * 1.7), law=law)
            time.sleep(0.1)

    lander = threading.Thread(target=keep_landing, daemon=True)
    lander.start()
    try:
        first = refit_law(law, tracking_uri=uri, bootstrap=20, plots=False)
        second = refit_law(law, tracking_uri=uri, bootstrap=20, plots=False)
    finally:
        stop.set()
        lander.join(30)
    assert (first.status, second.status) == ("registered", "registered"), (first.reason, second.reason)
    _assert_versions_sound(client, law)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(backend: str, port: int, log: Path, **extra_env: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "_MLFLOW_SERVER"))}
    env.update(extra_env)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no job-runner processes outliving a SIGKILL
    cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--app-name", "transfer-laws", "--host",
           "127.0.0.1", "--port", str(port), "--workers", "1", "--backend-store-uri", backend,
           "--artifacts-destination", f"s3://{os.environ['TL_TEST_S3_BUCKET']}/crash-{port}/", "--serve-artifacts"]
    with log.open("a") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)  # test server
            return proc
        except (urllib.error.URLError, OSError):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"server did not start:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.5)


def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the server and its uvicorn worker, as a crash would
    proc.wait(30)


@pytest.mark.server
@pytest.mark.slow
def test_a_landing_pending_when_the_server_dies_is_refitted_after_restart(server_stack, tmp_path: Path) -> None:
    import psycopg2

    database = f"crash_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(server_stack.pg_uri.replace("+psycopg2", ""))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{database}"')
    admin.close()
    backend = server_stack.pg_uri.rsplit("/", 1)[0] + f"/{database}"
    port, log = _free_port(), tmp_path / "server.log"
    server = _start_server(backend, port, log)
    uri = f"http://127.0.0.1:{port}"
    try:
        client = MlflowClient(uri, uri)
        law = _law()
        experiment = client.create_experiment("runs")
        direct = MlflowClient(backend, backend)
        land_scratch_runs(direct, experiment, law=law)
        land_finetunes(direct, experiment, 12, law=law)
        landed = land_run(client, experiment, ROLE_FINETUNE, 1e6, 5e6, finetune_loss(1e6, 5e6), law=law)
        time.sleep(0.3)  # the hook queued the refit; it has not registered yet
        _kill(server)
        assert not _versions(direct, law), "the refit registered within 0.3 s: nothing was pending to lose"
        server = _start_server(backend, port, log)
        _wait_covered(client, law, [landed], timeout_s=180)
    finally:
        _kill(server)


def test_watch_decides_coverage_by_run_ids_not_clocks(sqlite_uri: str) -> None:
    """A run ended by a client whose clock is behind is still refitted; a run the reader excludes, or a law that
    cannot be fitted, is refitted once, not on every poll."""
    from transfer_laws.registry.watch import watch

    client = MlflowClient(sqlite_uri, sqlite_uri)
    experiment = client.create_experiment("runs")
    land_scratch_runs(client, experiment)
    land_finetunes(client, experiment, 12)
    fast = {"interval_s": 0, "bootstrap": 20, "plots": False}
    assert [r.status for r in watch(sqlite_uri, max_iterations=2, **fast)] == ["registered"]

    behind = land_run(client, experiment, ROLE_FINETUNE, 1e6, 5e6, finetune_loss(1e6, 5e6), finish=False)
    client.set_terminated(behind, "FINISHED", end_time=int(time.time() * 1000) - 13_000)  # a clock 13 s behind
    assert [r.status for r in watch(sqlite_uri, max_iterations=2, **fast)] == ["registered"]

    excluded = land_run(client, experiment, ROLE_FINETUNE, 1e6, 6e6, None)  # no loss: the reader excludes it
    assert [r.status for r in watch(sqlite_uri, max_iterations=3, **fast)] == ["registered"]
    latest = client.get_model_version_by_alias(law_model_name(LAW), "latest")
    assert {behind, excluded} <= _read_set(client, latest)

    from transfer_laws.registry.refit import refit_law

    with pytest.raises(ValueError, match="corpus name"):  # a crafted name is refused before any search filter
        refit_law("q'uote-to-python", tracking_uri=sqlite_uri)

    lonely = "code-to-lonely"  # one fine-tune, no scratch runs: its fit fails on every try
    land_run(client, experiment, ROLE_FINETUNE, 1e6, 1e6, 3.0, law=lonely)
    assert [(r.law, r.status) for r in watch(sqlite_uri, max_iterations=3, **fast)] == [(lonely, "failed")]
