"""Every landed run tests the law: the version that was ``@latest`` before a run landed forecasts it, once.

``refit_law`` calls ``forecast_new_runs`` after reading a law's runs and before it registers a new version, so every
trigger (server hook, webhook, ``watch``, the embedded store's in-process refit, ``refit`` from CI) goes through
it. The runs forecast are those the ``@latest`` version was not fitted on (``input_run_ids`` of its fit): a
forecast never comes from a version that includes its run. Each gets the metrics ``forecast.loss``,
``forecast.loss_low``, ``forecast.loss_high`` (95% prediction interval) and ``forecast.z`` and the tag
``transfer.forecast.version``, or, when the version cannot say (a new size, D_F outside the fitted range), the tag
``transfer.forecast.reason``. Runs that landed before a law's first version carry neither (there was nothing to
forecast from; that version is fitted on them), so a bulk import costs no write per run. Written once: under a
registry-side mutex per target (scratch runs serve every law of their target), a run that already carries either
tag is left alone, so racing refitters, in threads, processes or server replicas, write one forecast.

Each version's track record is then read back from the runs it forecast (``track_record``) and kept on the
version as tags, so MLflow's registry page, the card, ``refit --json``, the law page and ``report`` show it.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow.artifacts import download_artifacts
from mlflow.entities import Metric, RunTag

from transfer_laws.registry.fit import Forecast, TrackRecord, TransferLaw, VersionRecord, calibration, forecast_run
from transfer_laws.registry.law_card import calibration_line
from transfer_laws.registry.locks import registry_lock
from transfer_laws.registry.reader import LawInputs, active_experiment_ids, read_run, search_all_runs
from transfer_laws.registry.schema import (
    LAW_FIT_IN_MODEL,
    LAW_TAG_FORECAST_COVERAGE,
    LAW_TAG_FORECAST_MEAN_ABS_Z,
    LAW_TAG_TRACK_RECORD,
    METRIC_FORECAST_HIGH,
    METRIC_FORECAST_LOSS,
    METRIC_FORECAST_LOW,
    METRIC_FORECAST_Z,
    TAG_FORECAST_REASON,
    TAG_FORECAST_VERSION,
    law_model_name,
    parse_law,
)
from transfer_laws.registry.tracking import model_id_of

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)


def version_ref(law: str, version: str) -> str:
    """``models:/transfer-law-<law>/<n>``: the value of ``transfer.forecast.version``."""
    return f"models:/{law_model_name(law)}/{version}"


def load_version_fit(client: MlflowClient, tracking_uri: str, version: ModelVersion) -> TransferLaw:
    """The ``TransferLaw`` a registered version holds (its law model's fit folder)."""
    logged = client.get_logged_model(model_id_of(version))
    with tempfile.TemporaryDirectory() as tmp:
        local = download_artifacts(artifact_uri=f"{logged.artifact_location.rstrip('/')}/{LAW_FIT_IN_MODEL}",
                                   dst_path=tmp, tracking_uri=tracking_uri)
        return TransferLaw.load(Path(local))


def _claimed(tags: dict[str, str]) -> bool:
    return TAG_FORECAST_VERSION in tags or TAG_FORECAST_REASON in tags


def _write(client: MlflowClient, forecast: Forecast, ref: str) -> None:
    """One ``log_batch``: the metrics and the tag land together (one transaction on a SQL store)."""
    if forecast.reason:
        client.log_batch(forecast.run_id, tags=[RunTag(TAG_FORECAST_REASON, forecast.reason[:5000])])
        return
    now = int(time.time() * 1000)
    values = {METRIC_FORECAST_LOSS: forecast.loss, METRIC_FORECAST_LOW: forecast.low,
              METRIC_FORECAST_HIGH: forecast.high, METRIC_FORECAST_Z: forecast.z}
    metrics = [Metric(k, float(v), now, 0) for k, v in values.items() if math.isfinite(v)]
    client.log_batch(forecast.run_id, metrics=metrics, tags=[RunTag(TAG_FORECAST_VERSION, ref)])


def forecast_new_runs(client: MlflowClient, tracking_uri: str, law: str, latest: ModelVersion | None,
                      inputs: LawInputs, reader: MlflowClient | None = None) -> list[Forecast]:
    """Forecast, from ``latest`` (the version before these runs landed), every run of ``inputs`` it was not fitted
    on and that carries no forecast yet; write each once. Returns the forecasts written (by this call). Before a
    law's first version there is nothing to forecast from, and nothing is written (the first version is fitted on
    those runs; they carry no forecast)."""
    if latest is None:
        return []
    fit = load_version_fit(client, tracking_uri, latest)
    seen = set(fit.input_run_ids)
    forecasts = [forecast_run(fit, r) for r in inputs.points if r.run_id not in seen]
    if not forecasts:
        return []
    ref = version_ref(law, str(latest.version))
    written = []
    reader = reader or client
    with registry_lock(client, f"forecast.{parse_law(law)[1]}"):
        for forecast in forecasts:
            if _claimed(reader.get_run(forecast.run_id).data.tags):
                continue
            _write(client, forecast, ref)
            written.append(forecast)
    if any(not f.reason for f in written):
        update_track_record(client, law, str(latest.version), reader)
    return written


def _forecast_of(run: Run) -> Forecast:
    m, nan = run.data.metrics, float("nan")
    seen = read_run(run)  # the one parser of a run; a number it cannot use is NaN here
    return Forecast(run.info.run_id, seen.role, float(seen.n_params or nan), float(seen.d_f_tokens or nan),
                    seen.best_test_loss or nan, m.get(METRIC_FORECAST_LOSS, nan),
                    m.get(METRIC_FORECAST_LOW, nan), m.get(METRIC_FORECAST_HIGH, nan), m.get(METRIC_FORECAST_Z, nan))


def track_record(client: MlflowClient, law: str) -> TrackRecord:
    """How each version's forecasts fared, read back from the runs: ``versions`` ({version: calibration and
    ``runs``, each run's forecast}) and ``pooled`` (every forecast of the law)."""
    prefix = version_ref(law, "")
    flt = f"tags.`{TAG_FORECAST_VERSION}` LIKE '{prefix}%'"
    by_version: dict[str, list[Forecast]] = defaultdict(list)
    for run in search_all_runs(client, active_experiment_ids(client), flt):
        ref = run.data.tags.get(TAG_FORECAST_VERSION, "")
        if not ref.startswith(prefix):  # LIKE's '_' matches any one character
            continue
        version = ref.removeprefix(prefix)
        by_version[version].append(_forecast_of(run))
    versions = {v: VersionRecord(**calibration(fs), runs=[f.to_dict() for f in fs])
                for v, fs in sorted(by_version.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0)}
    pooled = calibration([f for fs in by_version.values() for f in fs])
    return TrackRecord(versions=versions, pooled=pooled)


def record_summary(record: TrackRecord) -> TrackRecord:
    """A track record without its per-run lists (what a version's ``law.json`` and card keep)."""
    versions = {v: VersionRecord(n=r["n"], inside=r["inside"], coverage=r["coverage"], mean_abs_z=r["mean_abs_z"],
                                 unscored=r["unscored"]) for v, r in record["versions"].items()}
    return TrackRecord(versions=versions, pooled=record["pooled"])


def update_track_record(client: MlflowClient, law: str, version: str,
                        reader: MlflowClient | None = None) -> VersionRecord:
    """Recount ``version``'s forecasts and keep its track-record tags current; returns its record."""
    record = track_record(reader or client, law)["versions"].get(version) or VersionRecord(**calibration([]))
    name = law_model_name(law)
    try:
        client.set_model_version_tag(name, version, LAW_TAG_TRACK_RECORD, calibration_line(record))
        if record.get("n"):
            client.set_model_version_tag(name, version, LAW_TAG_FORECAST_COVERAGE, f"{record['coverage']:.3f}")
            client.set_model_version_tag(name, version, LAW_TAG_FORECAST_MEAN_ABS_Z, f"{record['mean_abs_z']:.3f}")
    except Exception:  # the forecasts are written; the tags are a view of them
        log.warning("could not update the track record of %s version %s", name, version, exc_info=True)
    return record
