"""Refits inside a real basic-auth server (``mlflow server --app-name transfer-laws``, uvicorn, SQLite, proxied
artifacts) authenticate as the server's service account: "refit now" for a user with edit rights, and the
run-landed hook. The artifacts land in the server's proxied store."""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _servers import free_port, mlflow_server
from law_runs import LAW, finetune_loss, land_finetunes, land_run, land_scratch_runs
from mlflow import MlflowClient

from transfer_laws.plugin.page import CSRF_COOKIE, CSRF_HEADER
from transfer_laws.plugin.webhooks import ROUTE, create_webhook, signature
from transfer_laws.registry.refit import INPUTS_ARTIFACT
from transfer_laws.registry.schema import ENV_WEBHOOK_SECRET, LAW_TAG_REQUESTED_BY, ROLE_FINETUNE, law_model_name

pytestmark = pytest.mark.slow  # starts its own server: ~1-2 minutes on 2 busy cores

ADMIN, ADMIN_PASSWORD = "admin", "admin-password-1"
BOT, BOT_PASSWORD = "refit-bot", "refit-bot-password-1"
WEBHOOK_SECRET = "webhook-secret-1"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from cryptography.fernet import Fernet

    tmp_path = tmp_path_factory.mktemp("basic-auth-server")
    ini = tmp_path / "basic_auth.ini"
    ini.write_text(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{tmp_path / 'auth.db'}\n"
                   f"admin_username = {ADMIN}\nadmin_password = {ADMIN_PASSWORD}\n"
                   "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    backend = f"sqlite:///{tmp_path / 'mlflow.db'}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "_MLFLOW_SERVER"))}
    env.update({"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret",
                "TRANSFER_LAWS_BASIC_AUTH": "1", "TRANSFER_LAWS_HOME": str(tmp_path / "server-home"),
                "MLFLOW_TRACKING_USERNAME": BOT, "MLFLOW_TRACKING_PASSWORD": BOT_PASSWORD,
                ENV_WEBHOOK_SECRET: WEBHOOK_SECRET,
                "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https", "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true"})
    log = tmp_path / "server.log"
    cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--app-name", "transfer-laws",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--backend-store-uri", backend,
           "--serve-artifacts", "--artifacts-destination", str(tmp_path / "artifacts")]
    with mlflow_server(cmd, port, env=env, cwd=tmp_path, log=log, what="the basic-auth server") as uri:
        yield {"uri": uri, "backend": backend, "artifacts": tmp_path / "artifacts", "log": log}


def _press_refit(uri: str, user: str, password: str, law: str) -> tuple[int, dict[str, Any]]:
    """What the page's button does: load the page (CSRF cookie), then POST the refit with the token echoed."""
    import requests

    with requests.Session() as web:
        web.auth = (user, password)
        assert web.get(f"{uri}/transfer-laws/", timeout=60).status_code == 200
        token = web.cookies.get(CSRF_COOKIE)
        reply = web.post(f"{uri}/transfer-laws/api/refit", json={"law": law}, headers={CSRF_HEADER: token},
                         timeout=300)
    return reply.status_code, (reply.json() if reply.headers.get("content-type", "").startswith("application/json")
                               else {"body": reply.text[:500]})


def _inputs(client: MlflowClient, run_id: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(Path(client.download_artifacts(run_id, INPUTS_ARTIFACT, tmp)).read_text())


def test_refit_now_and_the_hook_run_as_the_service_account(auth_server: dict[str, Any],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.server import get_app_client

    uri = auth_server["uri"]
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
    users = get_app_client("basic-auth", tracking_uri=uri)
    users.create_user(BOT, BOT_PASSWORD)
    users.update_user_admin(BOT, True)
    users.create_user("editor", "editor-password-1")
    users.create_user("reader", "reader-password-1")
    client = MlflowClient(uri, uri)
    name = law_model_name(LAW)
    client.create_registered_model(name)
    users.grant_user_permission("editor", "registered_model", name, "EDIT")
    experiment = client.create_experiment("runs")
    assert client.get_experiment(experiment).artifact_location.startswith("mlflow-artifacts:")

    # Runs written to the backend store directly: no REST call, so the hook refits nothing yet.
    backend = MlflowClient(auth_server["backend"], auth_server["backend"])
    land_scratch_runs(backend, experiment)
    finetunes = land_finetunes(backend, experiment, 12)
    assert not client.search_model_versions(f"name = '{name}'")

    assert _press_refit(uri, "reader", "reader-password-1", LAW)[0] == 403
    status, body = _press_refit(uri, "editor", "editor-password-1", LAW)
    assert (status, body.get("status"), body.get("version")) == (200, "registered", "1"), body
    first = client.get_model_version(name, "1")
    assert first.tags[LAW_TAG_REQUESTED_BY] == "editor"
    refit_run = client.get_run(first.run_id)
    assert refit_run.data.tags[LAW_TAG_REQUESTED_BY] == "editor"
    assert set(finetunes) <= set(_inputs(client, first.run_id)["input_run_ids"])
    # The artifacts went through the server's proxy to its artifact destination, not to a local ./mlruns.
    stored = [p for p in auth_server["artifacts"].rglob(INPUTS_ARTIFACT) if first.run_id in str(p)]
    assert stored, f"no {INPUTS_ARTIFACT} of run {first.run_id} under the server's artifact destination"

    # A fine-tune that ends over REST: the hook refits as the service account, with nobody recorded as asking.
    landed = land_run(client, experiment, ROLE_FINETUNE, 1e6, 2e6, finetune_loss(1e6, 2e6))
    deadline = time.monotonic() + 240
    second = None
    while second is None and time.monotonic() < deadline:
        versions = [v for v in client.search_model_versions(f"name = '{name}'") if int(v.version) > 1]
        second = next((v for v in versions if landed in _inputs(client, v.run_id)["input_run_ids"]), None)
        time.sleep(1)
    assert second is not None, auth_server["log"].read_text()[-3000:]
    assert LAW_TAG_REQUESTED_BY not in second.tags


def test_webhook_deliveries_pass_basic_auth_and_forgeries_do_not(auth_server: dict[str, Any],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import requests

    url = auth_server["uri"] + ROUTE
    body = json.dumps({"entity": "registered_model", "action": "created", "timestamp": "x",
                       "data": {"name": "n"}}).encode()
    delivery, stamp = "delivery-1", str(int(time.time()))
    signed = {"X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": stamp,
              "X-MLflow-Signature": signature(WEBHOOK_SECRET, delivery, stamp, body)}
    forged = dict(signed, **{"X-MLflow-Signature": signature("guess", delivery, stamp, body)})
    # No credentials on either: the route's own signature check answers, not MLflow's basic-auth.
    refused = requests.post(url, data=body, headers=forged, timeout=30)
    assert refused.status_code == 401 and "signature" in refused.json()["error"]
    accepted = requests.post(url, data=body, headers=signed, timeout=30)
    assert (accepted.status_code, accepted.json()) == (200, {"status": "ignored"})
    # The rest of the server still needs credentials.
    assert requests.get(f"{auth_server['uri']}/api/2.0/mlflow/experiments/search?max_results=1",
                        timeout=30).status_code == 401

    # A delivery signed and sent by MLflow itself, to a webhook an admin registered.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
    client = MlflowClient(auth_server["uri"], auth_server["uri"])
    webhook_id = create_webhook(auth_server["uri"], url, WEBHOOK_SECRET)
    result = client.test_webhook(webhook_id)
    assert result.success, (result.response_status, result.response_body, result.error_message)


def test_a_users_host_header_never_receives_the_service_accounts_password(auth_server: dict[str, Any],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain user ends her own run with ``Host: 127.0.0.1:<her listener>`` (inside MLflow's allowed hosts): the
    refit still reaches the server and authenticates there; her listener receives nothing at all."""
    import requests
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client

    uri = auth_server["uri"]
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
    users = get_app_client("basic-auth", tracking_uri=uri)
    for user, password, admin in ((BOT, BOT_PASSWORD, True), ("alice", "alice-password-1", False)):
        try:
            users.create_user(user, password)
        except MlflowException:
            pass  # created by an earlier test on this server
        users.update_user_admin(user, admin)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "alice-password-1")
    alice = MlflowClient(uri, uri)
    law = "text-to-hostile"
    experiment = alice.create_experiment("alice-runs")
    backend = MlflowClient(auth_server["backend"], auth_server["backend"])
    land_scratch_runs(backend, experiment, law=law)
    land_finetunes(backend, experiment, 12, law=law)
    run_id = land_run(alice, experiment, ROLE_FINETUNE, 1e6, 2e6, finetune_loss(1e6, 2e6), law=law, finish=False)

    with socket.socket() as trap:
        trap.bind(("127.0.0.1", 0))
        trap.listen(4)
        trap.settimeout(0.5)
        ended = requests.post(f"{uri}/api/2.0/mlflow/runs/update", json={"run_id": run_id, "status": "FINISHED"},
                              headers={"Host": f"127.0.0.1:{trap.getsockname()[1]}"},
                              auth=("alice", "alice-password-1"), timeout=30)
        assert ended.status_code == 200, ended.text
        received: list[bytes] = []
        covered = None
        deadline = time.monotonic() + 240
        while covered is None and time.monotonic() < deadline:
            try:
                conn, _ = trap.accept()
                with conn:
                    conn.settimeout(2)
                    received.append(conn.recv(65536))
            except OSError:
                pass
            versions = alice.search_model_versions(f"name = '{law_model_name(law)}'")
            covered = next((v for v in versions if run_id in _inputs(alice, v.run_id)["input_run_ids"]), None)
    assert covered is not None, auth_server["log"].read_text()[-3000:]
    assert received == [], f"the listener got {received[0][:200]!r}"
