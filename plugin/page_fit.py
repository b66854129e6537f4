"""What the law page shows beyond MLflow's records: the version's fit (curves, bands, checks, warnings) and the
law's history (k, alpha, beta with intervals across versions).

The fit is the folder inside the version's law model (``law.json`` + ``draws.npz``, schema ``LAW_FIT_IN_MODEL``). A
logged model's artifacts never change, so a loaded fit is cached by model: the page loads each version's fit once
per server process.
"""

from __future__ import annotations

import logging
import math
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transfer_laws.plugin.page_data import PARAMS, LawView, download_artifact, intervals_from, version_metrics
from transfer_laws.registry.fit import JSON_NAME, NPZ_NAME, TransferLaw
from transfer_laws.registry.schema import LAW_FIT_ARTIFACT, LAW_FIT_IN_MODEL, REFIT_PARAM_N_RUNS

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

HISTORY_LIMIT = 30
"""Versions shown in the history (the newest ones): each costs a read of its refit run."""
_CACHE_SIZE = 256
"""Fits kept loaded (one per law version shown; a fit is a few hundred KB of bootstrap draws)."""
_cache: OrderedDict[str, TransferLaw] = OrderedDict()
_rows: OrderedDict[str, VersionRow] = OrderedDict()
_cache_lock = threading.Lock()
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionRow:
    """One law version in the history."""

    version: str
    created_ms: int
    params: dict[str, float | None]
    intervals: dict[str, list[float]]
    n_runs: int | None
    run_id: str | None


@dataclass
class FitView:
    """The fit behind the shown version, and the law's history; ``error`` says why there is no fit."""

    fit: TransferLaw | None
    warnings: list[str] = field(default_factory=list)
    checks: dict[str, object] = field(default_factory=dict)
    history: list[VersionRow] = field(default_factory=list)
    error: str | None = None


def _fit_location(client: MlflowClient, model_source: str) -> tuple[str, str]:
    """(artifact root, path under it) of the fit folder inside a version's law model."""
    if model_source.startswith("models:/m-"):
        model = client.get_logged_model(model_source.removeprefix("models:/").split("/")[0])
        return model.artifact_location, LAW_FIT_IN_MODEL
    if model_source.startswith("runs:/"):
        run_id, _, path = model_source.removeprefix("runs:/").partition("/")
        return client.get_run(run_id).info.artifact_uri or "", f"{path.strip('/')}/{LAW_FIT_IN_MODEL}".lstrip("/")
    raise ValueError(f"law model source {model_source!r} is neither models:/m-... nor runs:/...")


def load_fit(client: MlflowClient, model_source: str) -> TransferLaw:
    """The ``TransferLaw`` inside the law model at ``model_source`` (a version's source; cached: a logged model's
    artifacts never change); raises when it holds no readable fit."""
    with _cache_lock:
        if model_source in _cache:
            _cache.move_to_end(model_source)
            return _cache[model_source]
    root, relative = _fit_location(client, model_source)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / LAW_FIT_ARTIFACT
        folder.mkdir()
        for name in _fit_files():
            Path(download_artifact(root, f"{relative}/{name}", tmp)).replace(folder / name)
        fit = TransferLaw.load(folder)
    with _cache_lock:
        _cache[model_source] = fit
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return fit


def _fit_files() -> tuple[str, str]:
    return JSON_NAME, NPZ_NAME


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, so it is valid JSON (JSON has no NaN). Every JSON-ready
    value goes in, and the same shape comes out."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def history(client: MlflowClient, model_name: str) -> list[VersionRow]:
    """The newest HISTORY_LIMIT versions of the law, oldest first, with the parameters their refit runs logged."""
    versions = sorted(client.search_model_versions(f"name = '{model_name}'"), key=lambda v: int(v.version))
    return [_version_row(client, model_name, mv) for mv in versions[-HISTORY_LIMIT:]]


def _version_row(client: MlflowClient, model_name: str, mv: ModelVersion) -> VersionRow:
    """A version's row, cached by its run (a run id is unique across stores; its metrics do not change once the
    version exists); a version without a run is read every time."""
    key = f"{model_name}\0{mv.version}\0{mv.run_id}" if mv.run_id else None
    with _cache_lock:
        if key is not None and key in _rows:
            return _rows[key]
    try:
        metrics, run_id, _ = version_metrics(client, mv)
        n_runs = client.get_run(run_id).data.params.get(REFIT_PARAM_N_RUNS) if run_id else None
    except Exception:  # a version whose run is gone still has a row, without numbers
        metrics, run_id, n_runs = {}, None, None
    row = VersionRow(version=str(mv.version), created_ms=int(mv.creation_timestamp or 0),
                     params={p: metrics.get(p) for p in PARAMS}, intervals=intervals_from(metrics),
                     n_runs=int(n_runs) if n_runs and str(n_runs).isdigit() else None, run_id=run_id)
    with _cache_lock:
        if key is not None and run_id:
            _rows[key] = row
        while len(_rows) > _CACHE_SIZE * HISTORY_LIMIT:
            _rows.popitem(last=False)
    return row


def fit_view(client: MlflowClient, view: LawView) -> FitView:
    """The fit of the shown version (None, with the reason, when it cannot be read) and the law's history."""
    rows = history(client, view.model_name) if view.version is not None else []
    if view.model_source is None:
        return FitView(fit=None, history=rows, error="no version yet" if view.version is None else "no law model")
    try:
        fit = load_fit(client, view.model_source)
    except Exception:  # an old or foreign version: the page still shows its numbers and runs
        log.warning("law page: no readable fit in %s", view.model_source, exc_info=True)
        return FitView(fit=None, history=rows, error=f"its law model has no readable fit folder "
                                                     f"({' + '.join(_fit_files())})")
    checks = finite(dict(getattr(fit, "checks", {}) or {}))
    return FitView(fit=fit, warnings=[str(w) for w in fit.warnings], checks=checks, history=rows)
