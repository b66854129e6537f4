"""What the law page shows, read from MLflow: each law's latest version, its fit and the runs behind it.

Pure reads through an ``MlflowClient``; no Flask here, so the JSON endpoint, the HTML page and tests share it.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mlflow.artifacts import download_artifacts

from transfer_laws.registry import schema
from transfer_laws.registry.reader import LawInputs, read_law_inputs
from transfer_laws.registry.records import RunResult
from transfer_laws.registry.tracking import all_pages

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion, RegisteredModel

PARAMS = ("k", "alpha", "beta")
"""The fitted parameters of D_T = k * D_F^alpha * N^beta, as metric names on the version's source run."""
log = logging.getLogger(__name__)
_BOUND = re.compile(r"^(k|alpha|beta)[_.](lo|low|lower|hi|high|upper)$")


@dataclass(frozen=True)
class LawView:
    """One law as the page shows it."""

    law: str
    """``<source>-to-<target>``."""
    model_name: str
    """Registered model holding the law's versions (``transfer-law-<law>``)."""
    version: str | None
    """The version shown: the one under alias ``latest``, else the highest; None before the first refit (a law
    model an admin registered ahead, e.g. to grant edit rights, shows its runs and the refit button)."""
    aliases: list[str]
    """Aliases on that version."""
    version_count: int
    """How many versions the law has."""
    source_run_id: str | None
    """The run the version was registered from (holds k, alpha, beta as metrics)."""
    source_experiment_id: str | None
    """That run's experiment."""
    model_source: str | None
    """The version's law model (``models:/m-...``; ``runs:/<id>/<path>`` for one registered from run artifacts): the
    fit folder lies inside it."""
    params: dict[str, float | None]
    """k, alpha, beta."""
    intervals: dict[str, list[float]]
    """Per parameter, ``[low, high]`` where the fit logged bounds."""
    runs: list[RunResult] = field(default_factory=list)
    """Fine-tunes tagged with this law and scratch runs on its target that the refit reads."""
    excluded: list[dict[str, str]] = field(default_factory=list)
    """Runs left out, ``{"run_id", "reason"}``: by the reader now, and by the shown version's fit."""
    experiment_ids: list[str] = field(default_factory=list)
    """Experiments of every run the reader found for the law (under basic auth, who may see it)."""


def version_metrics(client: MlflowClient, mv: ModelVersion) -> tuple[dict[str, float], str | None, str | None]:
    """Metrics of the version's source run, else of its logged model (OSS versions point at ``models:/m-...``)."""
    metrics: dict[str, float] = {}
    run_id, experiment_id = mv.run_id, None
    if run_id:
        run = client.get_run(run_id)
        metrics.update(run.data.metrics)
        experiment_id = run.info.experiment_id
    source = mv.source or ""
    if source.startswith("models:/m-"):
        model = client.get_logged_model(source.removeprefix("models:/"))
        for metric in model.metrics or []:
            metrics.setdefault(metric.key, metric.value)
        run_id = run_id or model.source_run_id
        experiment_id = experiment_id or model.experiment_id
    return metrics, run_id, experiment_id


def intervals_from(metrics: dict[str, float]) -> dict[str, list[float]]:
    """Each parameter's interval, [low, high], from the version's bound metrics (``alpha_lo`` / ``alpha_hi``, ...)."""
    bounds: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        match = _BOUND.match(key)
        if match:
            side = "lo" if match.group(2).startswith("lo") else "hi"
            bounds.setdefault(match.group(1), {})[side] = value
    return {p: [b["lo"], b["hi"]] for p, b in bounds.items() if {"lo", "hi"} <= set(b)}


def law_runs(client: MlflowClient, law: str) -> LawInputs:
    """The law's runs as the refit reads them (``read_law_inputs``: the same query, records and exclusions), so
    the page lists exactly what the next fit will use; runs the reader leaves out come with their reasons."""
    source, target = schema.parse_law(law)
    schema.law_name(source, target)  # only well-formed names reach the reader's filters (no quote can break them)
    return read_law_inputs(law, client)


def download_artifact(root_uri: str, relative: str, dst: str) -> str:
    """The local path of ``relative`` under an artifact root (a run's ``artifact_uri``, a logged model's
    ``artifact_location``). Inside the server the store URI is the database, which cannot resolve the proxied
    ``mlflow-artifacts:`` URIs, so those are read through the server's own artifact repository."""
    if root_uri.startswith("mlflow-artifacts:"):
        # lazy: importing MLflow's server handlers builds its Flask app; only the server reads these roots
        from mlflow.server.handlers import _get_artifact_repo_mlflow_artifacts

        root = root_uri.split(":", 1)[1].lstrip("/")
        return _get_artifact_repo_mlflow_artifacts().download_artifacts(f"{root}/{relative}", dst)
    return download_artifacts(artifact_uri=f"{root_uri.rstrip('/')}/{relative}", dst_path=dst)


_REPORTS: OrderedDict[str, list[dict[str, str]]] = OrderedDict()
_REPORTS_KEPT = 1024
_reports_lock = threading.Lock()


def _excluded_from_report(client: MlflowClient, run_id: str | None) -> list[dict[str, str]]:
    """Runs the reader or the fit left out, with reasons; empty when the run has no readable report. A refit run's
    report never changes once its version exists, so it is read once per run."""
    if not run_id:
        return []
    with _reports_lock:
        if run_id in _REPORTS:
            return list(_REPORTS[run_id])
    pairs = _read_report(client, run_id)
    if pairs is None:
        return []
    with _reports_lock:
        _REPORTS[run_id] = pairs
        while len(_REPORTS) > _REPORTS_KEPT:
            _REPORTS.popitem(last=False)
    return list(pairs)


def _read_report(client: MlflowClient, run_id: str) -> list[dict[str, str]] | None:
    with tempfile.TemporaryDirectory() as dst:
        try:
            report_path = download_artifact(client.get_run(run_id).info.artifact_uri or "", schema.INPUTS_ARTIFACT,
                                            dst)
            with open(report_path) as f:
                report = json.load(f)
        except Exception:  # a version without a report (or unreachable store) shows no exclusions
            return None
    pairs = list((report.get("excluded_by_reader") or {}).items()) + list(report.get("excluded_by_fit") or [])
    return [{"run_id": str(rid), "reason": str(reason)} for rid, reason in pairs]


def _shown_version(client: MlflowClient, name: str) -> tuple[ModelVersion | None, int]:
    versions = client.search_model_versions(f"name = '{name}'")
    if not versions:
        return None, 0
    try:
        shown = client.get_model_version_by_alias(name, schema.LAW_ALIAS)
    except Exception:  # no alias yet: show the newest version
        shown = max(versions, key=lambda v: int(v.version))
    return shown, len(versions)


def law_view(client: MlflowClient, name: str) -> LawView:
    """The page's view of one registered law model."""
    mv, count = _shown_version(client, name)
    law = (mv.tags.get(schema.LAW_TAG_LAW) if mv is not None else None) or name.removeprefix(schema.LAW_MODEL_PREFIX)
    metrics, run_id, experiment_id = version_metrics(client, mv) if mv is not None else ({}, None, None)
    inputs = law_runs(client, law)
    runs, left_out_now = inputs.points, inputs.excluded
    excluded = _excluded_from_report(client, run_id) if mv is not None else []
    listed = {e["run_id"] for e in excluded}
    excluded += [{"run_id": rid, "reason": why} for rid, why in sorted(left_out_now.items()) if rid not in listed]
    return LawView(
        law=law,
        model_name=name,
        version=str(mv.version) if mv is not None else None,
        aliases=sorted(mv.aliases or []) if mv is not None else [],
        version_count=count,
        source_run_id=run_id,
        source_experiment_id=experiment_id,
        model_source=(mv.source or None) if mv is not None else None,
        params={p: metrics.get(p) for p in PARAMS},
        intervals=intervals_from(metrics),
        runs=runs,
        excluded=excluded,
        experiment_ids=sorted(inputs.experiment_ids),
    )


def law_models(client: MlflowClient) -> list[RegisteredModel]:
    """Every registered model named ``transfer-law-*`` (with its latest versions), by name, all pages."""
    return all_pages(lambda token: client.search_registered_models(
        filter_string=f"name LIKE '{schema.LAW_MODEL_PREFIX}%'", max_results=1000, order_by=["name ASC"],
        page_token=token))


def collect_laws(client: MlflowClient) -> list[LawView]:
    """Every registered model named ``transfer-law-*``, sorted by law (uncached; the server's page uses
    ``page_cache``)."""
    views = []
    for model in law_models(client):
        try:
            views.append(law_view(client, model.name))
        except Exception:  # one crafted or broken model (e.g. a quote in its name) must not hide the rest
            log.warning("law page: skipping registered model %r", model.name, exc_info=True)
    return sorted(views, key=lambda view: view.law)
