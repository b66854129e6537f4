"""Every landed run tests the law: 95% prediction intervals, leave-one-out, and the forecast written once on each
run by the version before it (real SQLite store, racing threads and processes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from _fit_synth import TEXT_TO_PYTHON, synthetic_runs
from law_runs import LAW, finetune_grid, finetune_loss, land_finetunes, land_run, scratch_store_at
from mlflow import MlflowClient

from transfer_laws.registry.fit import fit_transfer_law
from transfer_laws.registry.fit._forecast import (
    F_D_F_RANGE,
    F_D_RANGE,
    F_NEW_SIZE,
    F_NO_SPREAD,
    F_ROLE,
    finetune_interval,
    forecast_run,
    score,
)
from transfer_laws.registry.fit._loo import leave_one_out
from transfer_laws.registry.forecast import forecast_new_runs, track_record, version_ref
from transfer_laws.registry.reader import read_law_inputs
from transfer_laws.registry.refit import latest_version, refit_law
from transfer_laws.registry.schema import (
    LAW_TAG_LOO,
    LAW_TAG_TRACK_RECORD,
    METRIC_FORECAST_HIGH,
    METRIC_FORECAST_LOSS,
    METRIC_FORECAST_LOW,
    METRIC_FORECAST_Z,
    ROLE_FINETUNE,
    TAG_FORECAST_REASON,
    TAG_FORECAST_VERSION,
    law_model_name,
)
from transfer_laws.scripts.refit import EXIT_FORECAST, EXIT_OK, refit_cli

FAST = {"bootstrap": 50, "plots": False}
GRID = {"n_grid": (1e6, 1e7, 1e8), "scratch_d": tuple(np.geomspace(1e4, 1e11, 8)),
        "d_f": tuple(np.geomspace(1e3, 1e6, 4))}


# The fitter: prediction intervals, reasons, leave-one-out (no MLflow).

def test_a_prediction_interval_holds_a_new_run_where_the_laws_own_interval_does_not() -> None:
    """Replicates of every fine-tune (new noise, same design) fall inside the prediction interval about 95% of the
    time; the bootstrap's interval of the law's mean loss, which leaves out the run-to-run noise, holds far fewer."""
    inside = narrow = total = 0
    for seed in range(3):
        law = fit_transfer_law(synthetic_runs(TEXT_TO_PYTHON, 0.005, seed=seed, **GRID), bootstrap=300, seed=seed)
        replicate = [r for r in synthetic_runs(TEXT_TO_PYTHON, 0.005, seed=100 + seed, **GRID)
                     if r.role == ROLE_FINETUNE]
        used = {(p.n, p.d_f) for p in law.points if p.used}
        for run in (r for r in replicate if (r.n_params, r.d_f_tokens) in used):
            _, low, high = finetune_interval(law, np.array(run.n_params), np.array(run.d_f_tokens))
            draws = law.scratch.log_loss(np.full(law.draws["k"].shape, run.n_params), np.log(
                run.d_f_tokens + law.draws["k"] * run.d_f_tokens ** law.draws["alpha"]
                * run.n_params ** law.draws["beta"]))
            p_low, p_high = np.exp(np.nanpercentile(draws, [2.5, 97.5]))
            inside += int(low <= run.best_test_loss <= high)
            narrow += int(p_low <= run.best_test_loss <= p_high)
            total += 1
    assert total >= 20
    assert inside / total >= 0.85, (inside, total)
    assert narrow < inside


def test_runs_the_law_cannot_forecast_carry_the_reason() -> None:
    runs = synthetic_runs(TEXT_TO_PYTHON, 0.001, seed=0, **GRID)
    law = fit_transfer_law(runs, bootstrap=50)
    fine = next(r for r in runs if r.role == ROLE_FINETUNE)
    scratch = next(r for r in runs if r.role == "scratch")
    assert forecast_run(law, replace(fine, n_params=3e9)).reason.startswith(F_NEW_SIZE)
    used = [p.d_f for p in law.points if p.used]
    assert forecast_run(law, replace(fine, d_f_tokens=max(used) * 10)).reason.startswith(F_D_F_RANGE)
    assert forecast_run(law, replace(scratch, d_f_tokens=1e13)).reason.startswith(F_D_RANGE)
    assert forecast_run(law, replace(fine, role="pretrain")).reason == F_ROLE
    inside = forecast_run(law, fine)
    assert not inside.reason and inside.low < inside.loss < inside.high
    # A version that could not read its noise (no spare degrees of freedom) has no interval: no score, a reason.
    assert score("r", ROLE_FINETUNE, 1e6, 1e3, 4.0, 4.1, 4.1, 4.1).reason == F_NO_SPREAD


def test_leave_one_out_predicts_each_run_from_a_law_fitted_without_it() -> None:
    """A fine-tune 8% off the law sits inside the fit that includes it (it pulls the law) but far outside the law
    fitted without it; every used fine-tune and scratch run gets a prediction."""
    runs = synthetic_runs(TEXT_TO_PYTHON, 0.002, seed=3, **GRID)
    law0 = fit_transfer_law(runs, bootstrap=50)
    target = next(p for p in law0.points if p.used and p.n == 1e7)
    runs = [replace(r, best_test_loss=r.best_test_loss * 1.08) if r.run_id == target.run_id else r for r in runs]
    law = fit_transfer_law(runs, bootstrap=200)
    loo = leave_one_out(law, runs)
    by_id = {r["run_id"]: r for r in loo["runs"]}
    assert loo["roles"][ROLE_FINETUNE]["n"] + loo["roles"][ROLE_FINETUNE]["unscored"] == \
        sum(p.used for p in law.points)
    assert loo["roles"]["scratch"]["n"] > 0
    assert abs(by_id[target.run_id]["z"]) > 1.96 and not by_id[target.run_id]["inside"]
    in_sample = forecast_run(law, next(r for r in runs if r.run_id == target.run_id))
    assert abs(in_sample.z) < abs(by_id[target.run_id]["z"])


# The store: written once, by the version before the run, under racing triggers.

@pytest.fixture(scope="module")
def store_with_scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scratch_store_at(tmp_path_factory.mktemp("scratch-store"))


@pytest.fixture
def store(sqlite_uri: str, store_with_scratch: Path) -> tuple[MlflowClient, str]:
    """A copy of that store as the test's store (landing the scratch runs once is what takes time), and the id of
    its experiment ``runs``."""
    shutil.copyfile(store_with_scratch, sqlite_uri.removeprefix("sqlite:///"))
    client = MlflowClient(tracking_uri=sqlite_uri, registry_uri=sqlite_uri)
    return client, client.get_experiment_by_name("runs").experiment_id


def _land_noisy(client: MlflowClient, experiment: str, points: list[tuple[float, float]], seed: int,
                scale: float = 1.0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [land_run(client, experiment, ROLE_FINETUNE, n, d, finetune_loss(n, d) * scale
                     * float(np.exp(0.003 * rng.normal()))) for n, d in points]


def _fit_of(client: MlflowClient, uri: str, version: str):
    from transfer_laws.registry.forecast import load_version_fit

    return load_version_fit(client, uri, client.get_model_version(law_model_name(LAW), version))


def test_every_landed_run_is_forecast_once_by_the_version_before_it(
    store: tuple[MlflowClient, str], sqlite_uri: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    client, experiment = store
    first = _land_noisy(client, experiment, finetune_grid(12), seed=1)
    assert refit_law(LAW, tracking_uri=sqlite_uri, **FAST).version == "1"
    # Before any version there was nothing to forecast from: the first version is fitted on those runs.
    assert not any({TAG_FORECAST_REASON, TAG_FORECAST_VERSION} & set(client.get_run(r).data.tags) for r in first)
    version_1 = client.get_model_version(law_model_name(LAW), "1")
    assert LAW_TAG_LOO in version_1.tags  # leave-one-out from the first version on

    later = _land_noisy(client, experiment, [(n, d * 1.3) for n, d in finetune_grid(6)], seed=2)
    assert refit_law(LAW, tracking_uri=sqlite_uri, **FAST).version == "2"
    assert refit_law(LAW, tracking_uri=sqlite_uri, **FAST).status == "unchanged"
    fit_1, fit_2 = _fit_of(client, sqlite_uri, "1"), _fit_of(client, sqlite_uri, "2")
    for run_id in later:
        run = client.get_run(run_id)
        assert run.data.tags[TAG_FORECAST_VERSION] == version_ref(LAW, "1")
        assert run_id not in fit_1.input_run_ids and run_id in fit_2.input_run_ids
        m = run.data.metrics
        assert m[METRIC_FORECAST_LOW] < m[METRIC_FORECAST_LOSS] < m[METRIC_FORECAST_HIGH]
        assert np.isfinite(m[METRIC_FORECAST_Z])
        assert len(client.get_metric_history(run_id, METRIC_FORECAST_LOSS)) == 1
    # Runs the first version was fitted on were never forecast by it.
    assert not any(TAG_FORECAST_VERSION in client.get_run(r).data.tags for r in first)
    record = track_record(client, LAW)
    assert record["versions"]["1"]["n"] == len(later)
    tags = client.get_model_version(law_model_name(LAW), "1").tags
    assert tags[LAW_TAG_TRACK_RECORD].startswith(f"{record['versions']['1']['inside']}/{len(later)} inside")

    # The CI gate: a run far off the law falls outside its forecast and pulls the coverage under the gate.
    _land_noisy(client, experiment, [(1e6, 3e5 * 1.2)], seed=3, scale=1.3)
    capsys.readouterr()
    code = refit_cli(LAW, sqlite_uri, json_out=True, bootstrap=50, fail_if_forecast_coverage_below=0.99)
    report = json.loads(capsys.readouterr().out)
    pooled = report["track_record"]["pooled"]
    assert pooled["n"] == len(later) + 1 and pooled["inside"] < pooled["n"]
    assert code == EXIT_FORECAST and report["forecast_gate"]
    assert report["loo"]["n"] > 0
    assert refit_cli(LAW, sqlite_uri, bootstrap=50, fail_if_forecast_coverage_below=0.0) == EXIT_OK

    # What people read: the law page's calibration section with its chart, and report's chart of version 1.
    from flask import Flask

    from transfer_laws.plugin.page import register_law_page
    from transfer_laws.scripts.report import Args, run

    app = Flask("law-page")
    register_law_page(app, tracking_uri=sqlite_uri)
    html = app.test_client().get("/transfer-laws/").get_data(as_text=True)
    assert "Runs that landed after v1, forecast by it: " + tags[LAW_TAG_TRACK_RECORD].split(" (")[0] in html
    assert html.count('class="whisker"') >= len(later) + 1 and "Leave-one-out (v" in html
    out = tmp_path / "report"
    assert run(Args(law=LAW, version="1", out=out, tracking_uri=sqlite_uri)) == 0
    assert (out / "forecasts.svg").read_text().count('class="whisker"') == len(later)  # the outlier: v2's


def test_racing_triggers_write_each_forecast_once(store: tuple[MlflowClient, str], sqlite_uri: str) -> None:
    """Threads forecasting the same landing at once, and two refit processes racing, leave one forecast per run."""
    client, experiment = store
    _land_noisy(client, experiment, finetune_grid(12), seed=1)
    refit_law(LAW, tracking_uri=sqlite_uri, **FAST)
    landed = _land_noisy(client, experiment, [(n, d * 1.2) for n, d in finetune_grid(4)], seed=4)
    latest = latest_version(client, LAW)
    inputs = read_law_inputs(LAW, client)
    written: list[int] = []

    def race() -> None:
        mine = MlflowClient(tracking_uri=sqlite_uri, registry_uri=sqlite_uri)
        written.append(len(forecast_new_runs(mine, sqlite_uri, LAW, latest, inputs)))

    threads = [threading.Thread(target=race) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sum(written) == len(landed)
    for run_id in landed:
        assert len(client.get_metric_history(run_id, METRIC_FORECAST_LOSS)) == 1

    more = _land_noisy(client, experiment, [(n, d * 1.25) for n, d in finetune_grid(3)], seed=5)
    code = "import sys;from transfer_laws.registry.refit import refit_law;"
    code += "print(refit_law(sys.argv[1], bootstrap=20, plots=False).status)"
    procs = [subprocess.Popen([sys.executable, "-c", code, LAW], stdout=subprocess.PIPE, text=True,
                              env=os.environ.copy()) for _ in range(2)]
    for p in procs:
        p.communicate(timeout=300)
    for run_id in more:
        run = client.get_run(run_id)
        assert run.data.tags[TAG_FORECAST_VERSION] == version_ref(LAW, "1")  # @latest before they landed
        assert len(client.get_metric_history(run_id, METRIC_FORECAST_LOSS)) == 1


def test_a_new_size_gets_a_reason_not_a_number(store: tuple[MlflowClient, str], sqlite_uri: str) -> None:
    client, experiment = store
    land_finetunes(client, experiment, 12)
    refit_law(LAW, tracking_uri=sqlite_uri, **FAST)
    new_size = land_run(client, experiment, ROLE_FINETUNE, 3e8, 1e5, finetune_loss(3e8, 1e5))
    refit_law(LAW, tracking_uri=sqlite_uri, **FAST)
    run = client.get_run(new_size)
    assert run.data.tags[TAG_FORECAST_REASON].startswith(F_NEW_SIZE)
    assert METRIC_FORECAST_LOSS not in run.data.metrics and TAG_FORECAST_VERSION not in run.data.tags
