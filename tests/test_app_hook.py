"""The server hook: which REST calls count as a landing, on MLflow's real Flask app, and the app factory."""

from __future__ import annotations

from pathlib import Path

import pytest

from transfer_laws.plugin.hook import install_refit_hook, landed_run_id

UPDATE = "/api/2.0/mlflow/runs/update"
CONFIGURED = "http://127.0.0.1:5999"


@pytest.mark.parametrize(
    ("path", "status_code", "body", "expected"),
    [
        (UPDATE, 200, {"run_id": "r1", "status": "FINISHED"}, "r1"),
        ("/ajax-api/2.0/mlflow/runs/update", 200, {"run_id": "r1", "status": "KILLED"}, "r1"),
        (UPDATE, 200, {"run_uuid": "r1", "status": "FAILED"}, "r1"),
        ("/api/2.0/mlflow/runs/delete", 200, {"run_id": "r1"}, "r1"),
        ("/api/2.0/mlflow/runs/restore", 200, {"run_id": "r1"}, "r1"),
        (UPDATE, 200, {"run_id": "r1", "status": "RUNNING"}, None),
        (UPDATE, 200, {"run_id": "r1", "run_name": "renamed"}, None),
        (UPDATE, 400, {"run_id": "r1", "status": "FINISHED"}, None),
        ("/api/2.0/mlflow/runs/log-batch", 200, {"run_id": "r1"}, None),
        (UPDATE, 200, None, None),
        (UPDATE, 200, {"run_id": "", "status": "FINISHED"}, None),
    ],
)
def test_landed_run_id(path: str, status_code: int, body: object, expected: str | None) -> None:
    assert landed_run_id(path, "POST", status_code, body) == expected


def test_hook_on_mlflows_flask_app_sees_a_run_ending_over_rest(
    sqlite_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("_MLFLOW_SERVER_FILE_STORE", sqlite_uri)
    monkeypatch.setenv("_MLFLOW_SERVER_ARTIFACT_ROOT", (tmp_path / "artifacts").as_uri())
    monkeypatch.setenv("_MLFLOW_SERVER_SERVE_ARTIFACTS", "false")
    from flask import Flask
    from mlflow import MlflowClient
    from mlflow.server import handlers

    app = Flask("hook-test")
    for rule, view, methods in handlers.get_endpoints():
        app.add_url_rule(rule, view_func=view, methods=methods)
    landed: list[tuple[str, str]] = []
    assert install_refit_hook(app, enqueue=lambda run_id, uri: landed.append((run_id, uri)), server_uri=CONFIGURED)
    client = app.test_client()

    experiment = MlflowClient(sqlite_uri).create_experiment("e", artifact_location=(tmp_path / "a").as_uri())
    created = client.post("/api/2.0/mlflow/runs/create", json={"experiment_id": experiment})
    assert created.status_code == 200, created.json
    run_id = created.json["run"]["info"]["run_id"]
    assert client.post(UPDATE, json={"run_id": run_id, "status": "RUNNING"}).status_code == 200
    assert landed == []
    # A caller-chosen Host header does not move the refit: it goes to the configured address.
    ended = client.post(UPDATE, json={"run_id": run_id, "status": "FINISHED"}, headers={"Host": "127.0.0.1:1"})
    assert ended.status_code == 200
    assert landed == [(run_id, CONFIGURED)]
    assert client.post(UPDATE, json={"run_id": "nope", "status": "FINISHED"}).status_code != 200
    assert len(landed) == 1


def test_hook_never_breaks_the_response() -> None:
    from flask import Flask

    app = Flask("hook-test")
    app.add_url_rule(UPDATE, "update", lambda: {"ok": True}, methods=["POST"])

    def explode(run_id: str, uri: str) -> None:
        raise RuntimeError("queue down")

    install_refit_hook(app, enqueue=explode, server_uri=CONFIGURED)
    response = app.test_client().post(UPDATE, json={"run_id": "r1", "status": "FINISHED"})
    assert response.status_code == 200 and response.json == {"ok": True}


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["uvicorn", "--host", "0.0.0.0", "--port", "5000", "app"], None, "http://127.0.0.1:5000"),
        (["uvicorn", "--host=10.1.2.3", "--port=81", "app"], None, "http://10.1.2.3:81"),
        (["gunicorn", "-b", "[::]:5000", "-w", "4", "app"], None, "http://[::1]:5000"),
        (["waitress", "--host=::1", "--port=5000"], None, "http://[::1]:5000"),
        (["uvicorn", "--port", "5000", "--ssl-keyfile", "k.pem"], None, "https://127.0.0.1:5000"),
        (["pytest", "-x"], None, None),
        (["uvicorn", "--port", "5000"], "https://mlflow.example/", "https://mlflow.example"),
    ],
)
def test_refit_target_comes_from_configuration(argv: list[str], env: str | None, expected: str | None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from transfer_laws.plugin.refit_target import refit_target
    from transfer_laws.registry.schema import ENV_SERVER_URI

    monkeypatch.delenv("_MLFLOW_STATIC_PREFIX", raising=False)
    if env is None:
        monkeypatch.delenv(ENV_SERVER_URI, raising=False)
    else:
        monkeypatch.setenv(ENV_SERVER_URI, env)
    assert refit_target(argv) == expected


def test_refit_target_keeps_the_servers_static_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    from transfer_laws.plugin.refit_target import refit_target
    from transfer_laws.registry.schema import ENV_SERVER_URI

    monkeypatch.delenv(ENV_SERVER_URI, raising=False)
    monkeypatch.setenv("_MLFLOW_STATIC_PREFIX", "/mlflow")
    assert refit_target(["uvicorn", "--host", "0.0.0.0", "--port", "5000"]) == "http://127.0.0.1:5000/mlflow"


def test_without_a_known_address_the_hook_is_off(monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    from flask import Flask

    from transfer_laws.registry.schema import ENV_SERVER_URI

    monkeypatch.delenv(ENV_SERVER_URI, raising=False)
    monkeypatch.setattr("sys.argv", ["pytest"])
    landed: list[str] = []
    app = Flask("hook-test")
    assert not install_refit_hook(app, enqueue=lambda run_id, uri: landed.append(uri))
    assert ENV_SERVER_URI in caplog.text
