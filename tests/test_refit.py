"""The refit: a contract over every store (versions only for new inputs, a loadable law model holding the fit once,
one version from racing processes, a refit killed half way cleaned up by the next), and on the embedded SQLite store
what does not differ by store (coalescing, the CI exit codes, the watch loop)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from _stores import Store
from law_runs import ALPHA, BETA, LAW, land_finetunes, land_run, land_scratch_runs
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus, Run
from mlflow.entities.model_registry import ModelVersion

from transfer_laws.registry.fit import TransferLaw
from transfer_laws.registry.refit import refit_after_run, refit_law
from transfer_laws.registry.refit_service import RefitService
from transfer_laws.registry.schema import (
    ENV_LOCK_DB,
    INPUTS_ARTIFACT,
    LAW_FIT_IN_MODEL,
    LAW_TAG_FINGERPRINT,
    LAW_TAG_LAW,
    MLFLOW_MODEL_VERSIONS,
    MLFLOW_NOTE,
    PLOTS_ARTIFACT,
    REFIT_EXPERIMENT,
    REFIT_TAG_DEBRIS,
    REGISTRY_LOCK_PREFIX,
    ROLE_SCRATCH,
    law_model_name,
)
from transfer_laws.registry.tracking import fluent_uri
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


# --- the contract over every store (tests/_stores.py) ---------------------------------------------------------------

REFIT = ("import sys;from transfer_laws.registry.refit import refit_law;"
         "print(refit_law(sys.argv[1], tracking_uri=sys.argv[2], bootstrap=int(sys.argv[3]), plots=False).status)")
"""A refit in a process of its own: ``python -c REFIT <law> <tracking uri> <bootstrap draws>``."""


@pytest.fixture(scope="module")
def curves(store: Store) -> tuple[str, str]:
    """``(experiment, target)``: a target's scratch curves, landed once per store; each test fits a law of its own
    onto them."""
    experiment, target = store.experiment("curves"), f"t{uuid.uuid4().hex[:8]}"
    land_scratch_runs(store.writer(), experiment, law=f"text-to-{target}")
    return experiment, target


def _store_versions(client: MlflowClient, law: str) -> list[ModelVersion]:
    return sorted(client.search_model_versions(f"name = '{law_model_name(law)}'"), key=lambda v: int(v.version))


def _read_inputs(client: MlflowClient, law: str, version: str, folder: Path) -> dict[str, Any]:
    mv = client.get_model_version(law_model_name(law), version)
    return json.loads(Path(client.download_artifacts(mv.run_id, INPUTS_ARTIFACT, str(folder))).read_text())


def _stored_files(store: Store, name: str) -> list[str]:
    """Every file called ``name`` the store's artifacts hold: in this module's folder, or the server's S3 bucket."""
    if store.local:
        return [str(path) for path in store.folder.rglob(name)]
    import boto3

    s3 = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"])
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=os.environ["TL_TEST_S3_BUCKET"])
    return [o["Key"] for page in pages for o in page.get("Contents", []) if o["Key"].endswith(f"/{name}")]


def _no_lock_db() -> dict[str, str]:
    """This environment without a configured lock database: each store's own law lock (``test_locks.py``)."""
    return {k: v for k, v in os.environ.items() if k != ENV_LOCK_DB}


def test_refit_registers_once_per_input_set_the_model_predicts_and_holds_the_fit_once(
    store: Store, curves: tuple[str, str], tmp_path: Path
) -> None:
    experiment, target = curves
    law, client, writer = store.law(target), store.client(), store.writer()
    finetunes = land_finetunes(writer, experiment, 12, law=law)
    first = refit_law(law, tracking_uri=store.uri, bootstrap=50)
    assert first.status == "registered" and first.version == "1", first.reason
    assert first.fit.alpha == pytest.approx(ALPHA, abs=0.05) and first.fit.beta == pytest.approx(BETA, abs=0.05)

    mv = client.get_model_version(law_model_name(law), "1")
    assert mv.tags[LAW_TAG_FINGERPRINT] == first.fit.fingerprint
    run = client.get_run(mv.run_id)
    assert run.data.metrics["alpha"] == pytest.approx(first.fit.alpha)
    assert {"k", "beta"} <= set(run.data.metrics) and any(m.endswith("_low") for m in run.data.metrics)
    assert {a.path for a in client.list_artifacts(mv.run_id)} >= {PLOTS_ARTIFACT, INPUTS_ARTIFACT}
    assert set(finetunes) <= set(_read_inputs(client, law, "1", tmp_path)["input_run_ids"])
    # MLflow's own pages: the law model says it is version 1 (not "Not registered") and where the fit lies, and
    # the refit run says what it registered.
    model = client.get_logged_model(mv.source.removeprefix("models:/"))
    # (the version as a number on every store: the server writes it so, and the embedded store the same)
    assert {"name": law_model_name(law), "version": 1} in json.loads(model.tags[MLFLOW_MODEL_VERSIONS])
    assert "version 1" in model.tags[MLFLOW_NOTE] and LAW_FIT_IN_MODEL in model.tags[MLFLOW_NOTE]
    assert "versions/1?workflowType=machine_learning)" in run.data.tags[MLFLOW_NOTE]  # opens Model training
    assert INPUTS_ARTIFACT in run.data.tags[MLFLOW_NOTE]
    # The fit folder is stored once per version: inside the law model, where it loads back, and not on the run.
    folder = mlflow.artifacts.download_artifacts(f"{model.artifact_location}/{LAW_FIT_IN_MODEL}",
                                                 dst_path=str(tmp_path / "fit"), tracking_uri=store.uri)
    assert TransferLaw.load(folder).alpha == pytest.approx(first.fit.alpha)
    stored = [f for f in _stored_files(store, "law.json") if model.model_id in f or mv.run_id in f]
    assert len(stored) == 1 and model.model_id in stored[0], f"the fit was stored as {stored}"

    again = refit_law(law, tracking_uri=store.uri, **FAST)
    assert (again.status, again.version) == ("unchanged", "1")
    assert len(_store_versions(client, law)) == 1

    new_run = land_finetunes(writer, experiment, 13, law=law)[-1]
    third = refit_law(law, tracking_uri=store.uri, **FAST)
    assert (third.status, third.version) == ("registered", "2")
    assert new_run in _read_inputs(client, law, "2", tmp_path / "v2")["input_run_ids"]

    with fluent_uri(store.uri):
        model = mlflow.pyfunc.load_model(f"models:/{law_model_name(law)}@latest")
    out = model.predict(pd.DataFrame({"N": [1e6, 1e7], "D_F": [1e6, 3e5]}))
    expected = third.fit.predict([1e6, 1e7], [1e6, 3e5])
    assert list(out["D_T"]) == pytest.approx(list(expected.d_t))
    assert (out["D_T_low"] <= out["D_T_high"]).all() and out["D_T_low"].gt(0).all()
    assert (out["D_E"] > out["D_F"]).all() and out["multiplier"].gt(1).all()
    assert out["fraction"].between(0, 1).all() and out["predicted_loss"].gt(0).all()
    with pytest.raises(Exception, match="N"):
        model.predict(pd.DataFrame({"D_F": [1e6]}))


@pytest.mark.slow
def test_racing_processes_register_one_version(store: Store, curves: tuple[str, str]) -> None:
    experiment, target = curves
    law = store.law(target)
    land_finetunes(store.writer(), experiment, 12, law=law)
    procs = [subprocess.Popen([sys.executable, "-c", REFIT, law, store.uri, "20"], stdout=subprocess.PIPE, text=True,
                              env=_no_lock_db()) for _ in range(2)]
    statuses = sorted(p.communicate(timeout=300)[0].strip().splitlines()[-1] for p in procs)
    assert statuses == ["registered", "unchanged"]
    assert len(_store_versions(store.client(), law)) == 1


@pytest.mark.slow
def test_a_refit_killed_half_way_leaves_no_version_and_the_next_cleans_up(
    store: Store, curves: tuple[str, str]
) -> None:
    """The next refit closes what the killed one left: by the database lock it then holds, by the file lock, or (a
    CI job refitting over REST) by the killed refit's process being gone from this host."""
    experiment, target = curves
    law, client = store.law(target), store.client()
    land_finetunes(store.writer(), experiment, 12, law=law)
    refits = client.get_experiment_by_name(REFIT_EXPERIMENT)
    running_filter = f"tags.`{LAW_TAG_LAW}` = '{law}' and attributes.status = 'RUNNING'"
    proc = subprocess.Popen([sys.executable, "-c", REFIT, law, store.uri, "200"], env=_no_lock_db())
    running: list[Run] = []
    deadline = time.monotonic() + 240
    while not running and time.monotonic() < deadline and proc.poll() is None:
        refits = refits or client.get_experiment_by_name(REFIT_EXPERIMENT)
        running = client.search_runs([refits.experiment_id], running_filter) if refits else []
        time.sleep(0.05)
    assert running, "the refit never started logging"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert refits is not None and _store_versions(client, law) == []

    final = subprocess.run([sys.executable, "-c", REFIT, law, store.uri, "20"], env=_no_lock_db(),
                           capture_output=True, text=True, timeout=300)
    assert final.stdout.strip().splitlines()[-1:] == ["registered"], final.stderr[-3000:]
    killed = client.get_run(running[0].info.run_id)
    assert killed.info.status == "KILLED" and killed.data.tags.get(REFIT_TAG_DEBRIS)
    own = f"source_run_id = '{killed.info.run_id}'"
    models = client.search_logged_models([refits.experiment_id], filter_string=own)
    assert all(m.status != LoggedModelStatus.PENDING for m in models), [m.status for m in models]
    assert not client.search_registered_models(f"name = '{REGISTRY_LOCK_PREFIX}{law}'")
    (version,) = _store_versions(client, law)
    assert INPUTS_ARTIFACT in {a.path for a in client.list_artifacts(version.run_id)}
