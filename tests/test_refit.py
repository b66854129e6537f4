"""The refit service on the embedded SQLite store: versions only for new inputs, a loadable law model, coalescing,
crash safety, the CI exit codes and the watch loop."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from law_runs import ALPHA, BETA, LAW, land_finetunes, land_run, land_scratch_runs
from mlflow import MlflowClient

from transfer_laws.registry.refit import INPUTS_ARTIFACT, REFIT_EXPERIMENT, refit_after_run, refit_law
from transfer_laws.registry.refit_service import RefitService
from transfer_laws.registry.schema import (
    LAW_FIT_IN_MODEL,
    LAW_TAG_FINGERPRINT,
    MLFLOW_MODEL_VERSIONS,
    MLFLOW_NOTE,
    PLOTS_ARTIFACT,
    ROLE_SCRATCH,
    law_model_name,
)
from transfer_laws.registry.watch import watch
from transfer_laws.scripts.refit import EXIT_BAD_INPUT, EXIT_DRIFT, EXIT_FIT_FAILED, EXIT_OK, refit_cli

FAST = {"bootstrap": 20, "plots": False}


@pytest.fixture(scope="module")
def scratch_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the target's scratch curves, built once and copied per test (landing runs is slow)."""
    folder = tmp_path_factory.mktemp("scratch-store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    land_scratch_runs(client, client.create_experiment("runs", artifact_location=(folder / "a").as_uri()))
    return folder / "mlflow.db"


@pytest.fixture
def client(sqlite_uri: str, scratch_store: Path) -> MlflowClient:
    shutil.copyfile(scratch_store, sqlite_uri.removeprefix("sqlite:///"))
    return MlflowClient(tracking_uri=sqlite_uri, registry_uri=sqlite_uri)


@pytest.fixture
def experiment(client: MlflowClient) -> str:
    return client.get_experiment_by_name("runs").experiment_id


def _versions(client: MlflowClient) -> list:
    return client.search_model_versions(f"name = '{law_model_name(LAW)}'")


def _inputs(client: MlflowClient, version: str) -> dict:
    mv = client.get_model_version(law_model_name(LAW), version)
    return mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/{INPUTS_ARTIFACT}")


def test_refit_registers_once_per_input_set_and_the_model_predicts(
    client: MlflowClient, experiment: str, sqlite_uri: str
) -> None:
    finetunes = land_finetunes(client, experiment, 12)
    first = refit_law(LAW, tracking_uri=sqlite_uri, bootstrap=50)
    assert first.status == "registered" and first.version == "1", first.reason
    assert first.fit.alpha == pytest.approx(ALPHA, abs=0.05) and first.fit.beta == pytest.approx(BETA, abs=0.05)

    mv = client.get_model_version(law_model_name(LAW), "1")
    assert mv.tags[LAW_TAG_FINGERPRINT] == first.fit.fingerprint
    run = client.get_run(mv.run_id)
    assert run.data.metrics["alpha"] == pytest.approx(first.fit.alpha)
    assert {"k", "beta"} <= set(run.data.metrics) and any(m.endswith("_low") for m in run.data.metrics)
    assert {a.path for a in client.list_artifacts(mv.run_id)} >= {PLOTS_ARTIFACT, INPUTS_ARTIFACT}
    assert set(finetunes) <= set(_inputs(client, "1")["input_run_ids"])
    # MLflow's own pages: the law model says it is version 1 (not "Not registered") and where the fit lies, and
    # the refit run says what it registered.
    model = client.get_logged_model(mv.source.removeprefix("models:/"))
    assert {"name": law_model_name(LAW), "version": "1"} in json.loads(model.tags[MLFLOW_MODEL_VERSIONS])
    assert "version 1" in model.tags[MLFLOW_NOTE] and LAW_FIT_IN_MODEL in model.tags[MLFLOW_NOTE]
    assert "versions/1?workflowType=machine_learning)" in run.data.tags[MLFLOW_NOTE]  # opens Model training
    assert INPUTS_ARTIFACT in run.data.tags[MLFLOW_NOTE]

    again = refit_law(LAW, tracking_uri=sqlite_uri, **FAST)
    assert (again.status, again.version) == ("unchanged", "1")
    assert len(_versions(client)) == 1

    new_run = land_finetunes(client, experiment, 13)[-1]
    third = refit_law(LAW, tracking_uri=sqlite_uri, **FAST)
    assert (third.status, third.version) == ("registered", "2")
    assert new_run in _inputs(client, "2")["input_run_ids"]

    model = mlflow.pyfunc.load_model(f"models:/{law_model_name(LAW)}@latest")
    out = model.predict(pd.DataFrame({"N": [1e6, 1e7], "D_F": [1e6, 3e5]}))
    expected = third.fit.predict([1e6, 1e7], [1e6, 3e5])
    assert list(out["D_T"]) == pytest.approx(list(expected.d_t))
    assert (out["D_T_low"] <= out["D_T_high"]).all() and out["D_T_low"].gt(0).all()
    assert (out["D_E"] > out["D_F"]).all() and out["multiplier"].gt(1).all()
    assert out["fraction"].between(0, 1).all() and out["predicted_loss"].gt(0).all()
    with pytest.raises(Exception, match="N"):
        model.predict(pd.DataFrame({"D_F": [1e6]}))


def test_refit_of_a_named_store_needs_no_global_uri_and_leaves_it_unset(
    client: MlflowClient, experiment: str, sqlite_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the CLI does with --tracking-uri: nothing global set. A SQL registry resolves a models:/m-... source in
    # MLflow's *global* store, which would be ./mlflow.db in the working folder and hold no such model.
    from mlflow.tracking._tracking_service import utils as tracking_utils

    land_finetunes(client, experiment, 12)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.chdir(tmp_path)
    result = refit_law(LAW, tracking_uri=sqlite_uri, **FAST)
    assert (result.status, result.version) == ("registered", "1"), result.reason
    assert tracking_utils._tracking_uri is None and "MLFLOW_TRACKING_URI" not in os.environ
    assert "MLFLOW_REGISTRY_URI" not in os.environ
    assert not (tmp_path / "mlflow.db").exists()


def test_too_few_runs_fail_without_a_version(client: MlflowClient, experiment: str, sqlite_uri: str) -> None:
    land_finetunes(client, experiment, 1)
    result = refit_law(LAW, tracking_uri=sqlite_uri, **FAST)
    assert result.status == "failed" and result.version is None and result.reason
    assert _versions(client) == []
    with pytest.raises(ValueError, match="form"):
        refit_law("python", tracking_uri=sqlite_uri)


def test_refit_after_run_refits_every_law_of_a_scratch_runs_target(
    client: MlflowClient, experiment: str, sqlite_uri: str
) -> None:
    land_finetunes(client, experiment, 12)
    scratch = land_run(client, experiment, ROLE_SCRATCH, 1e5, 2e10, 4.0)
    results = refit_after_run(scratch, tracking_uri=sqlite_uri, **FAST)
    assert [(r.law, r.status) for r in results] == [(LAW, "registered")]


def test_service_coalesces_a_burst_and_the_last_version_has_every_run(
    client: MlflowClient, experiment: str, sqlite_uri: str
) -> None:
    land_finetunes(client, experiment, 6)
    service = RefitService(sqlite_uri, **FAST)
    try:
        burst = []
        for run_id in land_finetunes(client, experiment, 30, finish=False):
            client.set_terminated(run_id, "FINISHED")
            service.enqueue_run(run_id)
            burst.append(run_id)
        assert service.wait_idle(120)
    finally:
        service.close()
    versions = _versions(client)
    assert 1 <= len(versions) <= 5, [r.status for r in service.results]
    latest = max(int(v.version) for v in versions)
    assert set(burst) <= set(_inputs(client, str(latest))["input_run_ids"])


@pytest.mark.slow
def test_racing_processes_register_one_version(client: MlflowClient, experiment: str, sqlite_uri: str) -> None:
    land_finetunes(client, experiment, 12)
    code = "import sys;from transfer_laws.registry.refit import refit_law;"
    code += "print(refit_law(sys.argv[1], bootstrap=20, plots=False).status)"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, LAW], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
        for _ in range(2)
    ]
    statuses = sorted(p.communicate(timeout=180)[0].strip().splitlines()[-1] for p in procs)
    assert statuses == ["registered", "unchanged"]
    assert len(_versions(client)) == 1


@pytest.mark.slow
def test_a_refit_killed_midway_leaves_no_version(client: MlflowClient, experiment: str, sqlite_uri: str) -> None:
    land_finetunes(client, experiment, 12)
    code = "from transfer_laws.registry.refit import refit_law;refit_law(sys.argv[1], bootstrap=20)"
    proc = subprocess.Popen([sys.executable, "-c", "import sys;" + code, LAW], env=os.environ.copy())
    deadline = time.monotonic() + 120
    refits = None
    while time.monotonic() < deadline and proc.poll() is None:
        refits = client.get_experiment_by_name(REFIT_EXPERIMENT)
        if refits and client.search_runs([refits.experiment_id]):
            break  # the refit run exists: logging is under way
        time.sleep(0.05)
    assert proc.poll() is None, "the refit finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert refits is not None and _versions(client) == []

    result = refit_law(LAW, tracking_uri=sqlite_uri, **FAST)
    assert (result.status, result.version) == ("registered", "1")
    assert INPUTS_ARTIFACT in {a.path for a in client.list_artifacts(_versions(client)[0].run_id)}


def test_refit_cli_exit_codes(
    client: MlflowClient, experiment: str, sqlite_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert refit_cli("python", sqlite_uri) == EXIT_BAD_INPUT
    assert refit_cli(LAW, sqlite_uri, fail_if_alpha_moves=-1) == EXIT_BAD_INPUT
    assert refit_cli(LAW, sqlite_uri, bootstrap=20) == EXIT_FIT_FAILED
    land_finetunes(client, experiment, 12)
    capsys.readouterr()
    assert refit_cli(LAW, sqlite_uri, json_out=True, bootstrap=20) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "registered" and report["alpha"] == pytest.approx(ALPHA, abs=0.05)
    land_finetunes(client, experiment, 15)
    assert refit_cli(LAW, sqlite_uri, fail_if_alpha_moves=1.0, bootstrap=20) == EXIT_OK
    land_finetunes(client, experiment, 18)
    assert refit_cli(LAW, sqlite_uri, fail_if_alpha_moves=0.0, bootstrap=20) == EXIT_DRIFT


def test_watch_refits_only_uncovered_laws(client: MlflowClient, experiment: str, sqlite_uri: str) -> None:
    land_finetunes(client, experiment, 12)
    assert [(r.law, r.status) for r in watch(sqlite_uri, interval_s=0, max_iterations=1, **FAST)] == [
        (LAW, "registered")
    ]
    assert watch(sqlite_uri, interval_s=0, max_iterations=2, **FAST) == []
    land_finetunes(client, experiment, 13)
    assert [r.status for r in watch(sqlite_uri, interval_s=0, max_iterations=1, **FAST)] == ["registered"]


def test_fit_folder_is_logged_once_in_the_law_model_and_loads_back(client: MlflowClient, experiment: str,
                                                                   sqlite_uri: str, tmp_path: Path) -> None:
    from transfer_laws.registry.fit import TransferLaw

    land_finetunes(client, experiment, 12)
    result = refit_law(LAW, tracking_uri=sqlite_uri, **FAST)
    (mv,) = _versions(client)
    model = client.get_logged_model(mv.source.removeprefix("models:/"))
    folder = mlflow.artifacts.download_artifacts(f"{model.artifact_location}/{LAW_FIT_IN_MODEL}",
                                                 dst_path=str(tmp_path))
    assert TransferLaw.load(folder).alpha == pytest.approx(result.fit.alpha)
    # Once per version: the store holds one copy of the fit, the law model's (none on the refit run).
    home = Path(sqlite_uri.removeprefix("sqlite:///")).parent
    stored = list(home.rglob("law.json"))
    assert len(stored) == 1 and model.model_id in str(stored[0]), f"the fit was stored as {stored}"
    assert "fit" not in {a.path for a in client.list_artifacts(mv.run_id)}


def test_the_registry_lock_is_retaken_when_its_holder_releases_inside_mlflows_create(
    client: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's SQL store answers a create that lost the race by looking the holder up; when the holder releases in
    between, that look-up fails with RESOURCE_DOES_NOT_EXIST. The waiter must read it as "try again" (it failed a
    racing refit on the server stack), so the real store is made to release at exactly that moment."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    from transfer_laws.registry.locks import REGISTRY_LOCK_PREFIX, registry_lock

    name = f"{REGISTRY_LOCK_PREFIX}{LAW}"
    client.create_registered_model(name)  # another refit holds the lock
    look_up = SqlAlchemyStore.get_registered_model
    released: list[str] = []

    def holder_releases_first(store: SqlAlchemyStore, model_name: str) -> object:
        if model_name == name and not released:
            released.append(model_name)
            client.delete_registered_model(model_name)
        return look_up(store, model_name)

    monkeypatch.setattr(SqlAlchemyStore, "get_registered_model", holder_releases_first)
    with registry_lock(client, LAW, timeout_s=20):
        assert released == [name], "the race this test stages did not happen"
        assert client.get_registered_model(name).tags.get("transfer.lock_owner"), "the lock is ours now"
    with pytest.raises(MlflowException, match="not found"):  # released on exit
        client.get_registered_model(name)
