"""Faults on the real stack, round 3: a dead holder's registry lock, a PostgreSQL restart right after a landing,
runs whose lineage contradicts their law, the page and API past 100 law models, a webhook replayed after a server
restart, and out-of-range numbers on the command line. Each failed before its fix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _servers import free_port
from law_runs import DIGEST, finetune_loss, land_finetunes, land_run, land_scratch_runs
from mlflow import MlflowClient
from test_basic_auth_server import ADMIN, ADMIN_PASSWORD, auth_server  # noqa: F401 (auth_server: a fixture)
from test_faults import _kill, _law, _start_server, _wait_covered, seeded  # noqa: F401 (seeded: a fixture)

from transfer_laws.plugin.webhooks import ROUTE, signature
from transfer_laws.registry.refit import INPUTS_ARTIFACT
from transfer_laws.registry.schema import (
    CKPT_KIND_PRETRAINED,
    CKPT_TAG_CORPUS,
    CKPT_TAG_KIND,
    CKPT_TAG_TOKENIZER_DIGEST,
    LOCK_TAG_OWNER,
    REGISTRY_LOCK_PREFIX,
    ROLE_FINETUNE,
    TAG_PARENT,
    TAG_SOURCE,
    law_model_name,
)


def _report(client: MlflowClient, version: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(Path(client.download_artifacts(version.run_id, INPUTS_ARTIFACT, tmp)).read_text())


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=120) as reply:  # test server
        return json.loads(reply.read())


def _get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=120) as reply:  # test server
        return reply.read().decode()


@pytest.mark.server
def test_a_dead_holders_registry_lock_delays_its_law_by_seconds_and_no_other_law(
        seeded: dict[str, Any]) -> None:  # noqa: F811 (the fixture imported above)
    """A refit killed inside its registry-lock window leaves ``transfer-laws-lock.<law>`` behind. Before, the next
    refit waited 60 s and failed (the lock's 120 s TTL outlived the wait), so the landing stayed uncovered and the
    server's one refit worker was blocked for every law meanwhile."""
    client, law, direct = seeded["client"], seeded["law"], seeded["direct"]
    other = _law()
    land_scratch_runs(direct, seeded["experiment"], law=other)
    land_finetunes(direct, seeded["experiment"], 12, law=other)
    lock = f"{REGISTRY_LOCK_PREFIX}{law}"
    client.create_registered_model(lock, tags={LOCK_TAG_OWNER: "a-host-long-gone:1:1"})  # what a SIGKILL leaves
    stuck = land_run(client, seeded["experiment"], ROLE_FINETUNE, 1e6, 5e6, finetune_loss(1e6, 5e6), law=law)
    behind = land_run(client, seeded["experiment"], ROLE_FINETUNE, 1e6, 5e6, finetune_loss(1e6, 5e6), law=other)
    # The lease is 10 s: both are covered well inside a waiter's old 60 s timeout.
    _wait_covered(client, law, [stuck], timeout_s=45)
    _wait_covered(client, other, [behind], timeout_s=45)
    assert not client.search_registered_models(f"name = '{lock}'"), "the stale lock was not broken"


# --- a stack of its own: PostgreSQL that this test may restart, and a server it may kill ---------------------------

def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if os.environ.get("TL_PGBIN"):
        return Path(os.environ["TL_PGBIN"])
    if not found:
        pytest.skip("PostgreSQL server binaries are not installed")
    return found[-1]


class OwnStack:
    """A PostgreSQL cluster and an ``mlflow server --app-name transfer-laws`` on it, both restartable."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.bin = folder, _pg_bin()
        self.pg_port, self.port = free_port(), free_port()
        self.data = folder / "data"
        self.backend = f"postgresql+psycopg2://postgres@127.0.0.1:{self.pg_port}/mlflow"
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = folder / "server.log"
        self.server: subprocess.Popen | None = None
        self.secret = uuid.uuid4().hex

    def _pg(self, *args: str) -> None:
        # No pipes: the postmaster it starts would hold them open (its output goes to pg.log).
        subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "pg.log"),
                                     *args]), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=120)

    def start_pg(self) -> None:
        subprocess.run(_as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                                     "--auth=trust", "-E", "UTF8"]), check=True, capture_output=True, timeout=300)
        self._pg("-w", "-o",
                 f"-c listen_addresses=127.0.0.1 -p {self.pg_port} -k {self.folder} -c fsync=off", "start")
        subprocess.run(_as_postgres([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.pg_port), "-U",
                                     "postgres", "mlflow"]), check=True, capture_output=True, timeout=60)

    def restart_pg(self) -> None:
        self._pg("-w", "-m", "fast", "restart")

    def start_server(self) -> None:
        self.server = _start_server(self.backend, self.port, self.log, TRANSFER_LAWS_WEBHOOK_SECRET=self.secret)

    def stop(self) -> None:
        if self.server is not None:
            _kill(self.server)
            self.server = None


@pytest.fixture(scope="module")
def own_stack(server_stack) -> Iterator[OwnStack]:
    folder = Path(tempfile.mkdtemp(prefix="tl-own-pg-"))
    folder.chmod(0o755)  # the postgres user runs the cluster when we are root
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    stack = OwnStack(folder)
    try:
        stack.start_pg()
        stack.start_server()
        yield stack
    finally:
        stack.stop()
        if stack.data.exists():
            subprocess.run(_as_postgres([str(stack.bin / "pg_ctl"), "-D", str(stack.data), "-m", "immediate",
                                         "stop"]), capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.server
@pytest.mark.slow
def test_a_landing_survives_a_postgresql_restart(own_stack: OwnStack) -> None:
    """Restarted 0.2 s after the landing, while the server resolves the trigger: before, "could not resolve a
    refit trigger" and the run stayed uncovered until some later landing; now the trigger is retried."""
    client = MlflowClient(own_stack.uri, own_stack.uri)
    direct = MlflowClient(own_stack.backend, own_stack.backend)
    law = _law()
    experiment = client.create_experiment(f"runs-{law}")
    land_scratch_runs(direct, experiment, law=law)
    land_finetunes(direct, experiment, 12, law=law)
    landed = land_run(client, experiment, ROLE_FINETUNE, 1e6, 5e6, finetune_loss(1e6, 5e6), law=law)
    time.sleep(0.2)
    own_stack.restart_pg()
    _wait_covered(client, law, [landed], timeout_s=150)


@pytest.mark.server
@pytest.mark.slow
def test_a_delivery_replayed_after_a_server_restart_is_refused(own_stack: OwnStack) -> None:
    body = json.dumps({"entity": "model_version", "action": "created", "data": {}}).encode()
    delivery, stamp = str(uuid.uuid4()), str(int(time.time()))
    headers = {"X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": stamp, "Content-Type": "application/json",
               "X-MLflow-Signature": signature(own_stack.secret, delivery, stamp, body)}

    def send() -> int:
        request = urllib.request.Request(own_stack.uri + ROUTE, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:  # test server
                return reply.status
        except urllib.error.HTTPError as err:
            return err.code

    assert send() == 200
    own_stack.stop()
    own_stack.start_server()
    assert send() == 403  # remembered in the store, not in the dead process


@pytest.mark.server
@pytest.mark.slow
def test_the_page_and_api_list_every_law_past_the_first_hundred_models(own_stack: OwnStack) -> None:
    """110 empty law models named to sort first pushed every real law off the page and the API (which listed the
    first 100 registered models only)."""
    client = MlflowClient(own_stack.uri, own_stack.uri)
    direct = MlflowClient(own_stack.backend, own_stack.backend)
    for i in range(110):
        direct.create_registered_model(law_model_name(f"aa{i:03d}-to-x"))
    law = _law()
    experiment = client.create_experiment(f"runs-{law}")
    land_scratch_runs(direct, experiment, law=law)
    land_finetunes(direct, experiment, 12, law=law)
    landed = land_run(client, experiment, ROLE_FINETUNE, 1e6, 5e6, finetune_loss(1e6, 5e6), law=law)
    version = _wait_covered(client, law, [landed], timeout_s=180)

    seen, page = [], 1
    while page:
        body = _get_json(f"{own_stack.uri}/transfer-laws/api/laws?page={page}&per_page=50")
        seen += [entry["law"] for entry in body["laws"]]
        page = body["next_page"]
    assert len(seen) == len(set(seen)) == body["total"] >= 111
    assert law in seen and {f"aa{i:03d}-to-x" for i in range(110)} <= set(seen)
    one = _get_json(f"{own_stack.uri}/transfer-laws/api/laws?law={law}&per_page=1")["laws"][0]
    assert (one["law"], one["version"]) == (law, version.version)

    html = _get_text(f"{own_stack.uri}/transfer-laws/")
    assert f'href="?page=6#law-{law}"' in html  # the side bar lists every law, with the page it is drawn on
    assert f'id="law-{law}"' in _get_text(f"{own_stack.uri}/transfer-laws/?law={law}")

    # A new version replaces the cached one.
    again = land_run(client, experiment, ROLE_FINETUNE, 1e7, 5e6, finetune_loss(1e7, 5e6), law=law)
    newer = _wait_covered(client, law, [again], timeout_s=180)
    one = _get_json(f"{own_stack.uri}/transfer-laws/api/laws?law={law}&per_page=1")["laws"][0]
    assert one["version"] == newer.version != version.version


# --- lineage -------------------------------------------------------------------------------------------------------

def _checkpoint(client: MlflowClient, name: str, experiment: str, **tags: str) -> str:
    run = client.create_run(experiment).info.run_id
    client.set_terminated(run, "FINISHED")
    try:
        client.create_registered_model(name)
    except Exception:  # registered by an earlier test of this session
        pass
    version = client.create_model_version(name, f"runs:/{run}/checkpoint", run_id=run, tags=tags)
    return f"models:/{name}/{version.version}"


@pytest.mark.server
def test_runs_whose_lineage_contradicts_the_law_are_excluded_and_shown(seeded: dict[str, Any]) -> None:  # noqa: F811
    client, law, uri, experiment = seeded["client"], seeded["law"], seeded["uri"], seeded["experiment"]
    source = law.split("-to-")[0]
    other_law = _checkpoint(client, law_model_name(f"{source}-to-elsewhere"), experiment)
    on_code = _checkpoint(client, "round3-code-checkpoint", experiment,
                          **{CKPT_TAG_KIND: CKPT_KIND_PRETRAINED, CKPT_TAG_CORPUS: "code"})
    other_tokenizer = _checkpoint(client, "round3-text-checkpoint", experiment,
                                  **{CKPT_TAG_KIND: CKPT_KIND_PRETRAINED, CKPT_TAG_CORPUS: source,
                                     CKPT_TAG_TOKENIZER_DIGEST: f"not-{DIGEST}"})
    bad: dict[str, str] = {}
    for what, tag, value in (("another law's version", TAG_PARENT, other_law), ("code", TAG_PARENT, on_code),
                             ("tagged code", TAG_SOURCE, "code"), ("tokenizer", TAG_PARENT, other_tokenizer)):
        run = land_run(client, experiment, ROLE_FINETUNE, 1e6, 4e6 + len(bad), finetune_loss(1e6, 4e6), law=law,
                       finish=False)
        client.set_tag(run, tag, value)
        client.set_terminated(run, "FINISHED")
        bad[run] = what
    good = land_run(client, experiment, ROLE_FINETUNE, 1e7, 5e6, finetune_loss(1e7, 5e6), law=law)

    version = _wait_covered(client, law, [*bad, good])
    report = _report(client, version)
    assert good in report["input_run_ids"] and not set(bad) & set(report["input_run_ids"])
    reasons = report["excluded_by_reader"]
    assert all(reasons.get(run, "").startswith("lineage:") for run in bad), reasons
    assert "is not a pretrained checkpoint" in reasons[next(r for r, w in bad.items() if w.startswith("another"))]
    assert "pretrained on code" in reasons[next(r for r, w in bad.items() if w == "code")]
    assert "transfer.source=code" in reasons[next(r for r, w in bad.items() if w == "tagged code")]
    assert "tokenizer" in reasons[next(r for r, w in bad.items() if w == "tokenizer")]
    shown = _get_json(f"{uri}/transfer-laws/api/laws?law={law}&per_page=1")["laws"][0]
    assert shown["law"] == law
    listed = {e["run_id"]: e["reason"] for e in shown["excluded"]}
    assert all(listed.get(run, "").startswith("lineage:") for run in bad), listed


# --- the command line ----------------------------------------------------------------------------------------------

def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["TRANSFER_LAWS_HOME"] = str(cwd / "home")
    return subprocess.run([sys.executable, "-m", "transfer_laws.scripts.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


@pytest.mark.parametrize("argv", [["finetune", "--from", "models:/pretrained-text@champion", "--d-f-tokens", "1e30"],
                                  ["scratch", "--d-f-tokens", "1e30"], ["predict", "--n", "1e40", "--d-f", "1e6"]])
def test_out_of_range_numbers_are_bad_input_before_any_work(argv: list[str], tmp_path: Path) -> None:
    done = _cli(*argv, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "must be at most" in lines[0], done.stderr
    assert not (tmp_path / "home").exists()  # nothing was started


def test_a_yaml_config_error_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("d_f_tokens: [1, 2\ntarget: python\n")
    done = _cli("scratch", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not valid YAML" in lines[0] and "line" in lines[0], done.stderr


# --- who sees what under basic auth --------------------------------------------------------------------------------

@pytest.mark.slow
def test_under_basic_auth_a_user_sees_only_laws_of_experiments_she_may_read(
        auth_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811 (the fixture above)
    """Before, the page and ``/api/laws`` showed every law and all its run ids to any signed-in user, even one
    MLflow's own API refuses the experiment to."""
    import requests
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client

    uri = auth_server["uri"]
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
    users = get_app_client("basic-auth", tracking_uri=uri)
    try:
        users.create_user("outsider", "outsider-password-1")
    except MlflowException:
        pass  # created by an earlier run of this module's server
    client = MlflowClient(uri, uri)
    backend = MlflowClient(auth_server["backend"], auth_server["backend"])
    open_law, secret_law = "text-to-open", "text-to-secret"
    secret_runs: list[str] = []
    secret_experiment = ""
    for law in (open_law, secret_law):
        experiment = client.create_experiment(f"runs-{law}-{uuid.uuid4().hex[:6]}")
        client.create_registered_model(law_model_name(law))  # the page lists it; its runs are written directly
        runs = land_scratch_runs(backend, experiment, law=law) + land_finetunes(backend, experiment, 3, law=law)
        if law == secret_law:
            users.grant_user_permission("outsider", "experiment", experiment, "DENY")
            secret_runs, secret_experiment = runs, experiment
    searched = requests.post(f"{uri}/api/2.0/mlflow/runs/search", json={"experiment_ids": [secret_experiment]},
                             auth=("outsider", "outsider-password-1"), timeout=60)
    assert searched.status_code == 403 or not searched.json().get("runs"), "MLflow itself lets her read them"

    def seen(user: str, password: str) -> tuple[str, dict[str, Any]]:
        page = requests.get(f"{uri}/transfer-laws/", auth=(user, password), timeout=120)
        api = requests.get(f"{uri}/transfer-laws/api/laws", auth=(user, password), timeout=120)
        assert page.status_code == api.status_code == 200
        return page.text, {entry["law"]: entry for entry in api.json()["laws"]}

    html, laws = seen("outsider", "outsider-password-1")
    assert open_law in laws and secret_law not in laws
    assert secret_law not in html and not any(run in html for run in secret_runs)
    assert not any(run in json.dumps(laws) for run in secret_runs)
    html, laws = seen(ADMIN, ADMIN_PASSWORD)
    assert {open_law, secret_law} <= set(laws) and f'id="law-{secret_law}"' in html
    assert set(secret_runs) <= {r["run_id"] for r in laws[secret_law]["runs"]}
