"""The refit service: read a law's runs, fit, and register a new law version when the inputs changed.

``refit_law`` does one refit under the law's lock (``transfer_laws.registry.locks``): it reads every finished run
of the law, fits ``D_T = k * D_F^alpha * N^beta`` with the fitter, and compares the fit's fingerprint of its
eligible inputs with the ``transfer.fingerprint`` tag of the version behind alias ``latest``. Same inputs: status
``unchanged``. New inputs: everything (plots, input run ids, metrics, the pyfunc law model holding the fit folder,
logged once) is logged on a run in experiment ``transfer-laws-refits`` first, checked, and only then is a model
version created; ``@latest`` (MLflow's reserved alias for the highest version) then points to it. A refit that
dies half way leaves no version, and the next landing simply refits again.

Every trigger calls ``refit_law``: the end of a training run on the embedded store (``refit_after_run``), the
server's background service (``registry/refit_service.py``), the law page's "refit now", and the ``refit``,
``watch`` (``registry/watch.py``) and ``demo`` commands.

Coverage is decided by run ids, never by clocks: each version carries ``transfer.inputs_digest``, the sha256 of
every run id its refit read (used or excluded by the reader). A law is covered when the digest of what the reader
finds now equals the digest on ``@latest``. Versions are created compare-and-set under the registry-side lock
(``locks.registry_lock``): a refit creates its version when no version was registered since it read its runs (its
runs are then the newest snapshot), or else when a re-read shows the runs are still exactly the ones it fitted;
otherwise it refits the newer runs (a few times) and never registers the older ones. So two refitters without a
shared ``law_lock`` can neither register one input set twice nor put an older set above a newer one, and a law
whose runs land faster than a refit takes still gets versions. Refit runs left RUNNING by a killed refit (and
their PENDING logged models) are closed by the next refit of the law (``_dead``: at once when it holds the same
shared lock or runs on the dead refit's host, else once the dead run's heartbeat is ``REFIT_STALE_S`` old).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TypedDict, TypeGuard

from transfer_laws.registry.fit import (
    JSON_NAME,
    NPZ_NAME,
    FitError,
    TransferLaw,
    fit_transfer_law,
    leave_one_out,
    plot_law,
)
from transfer_laws.registry.forecast import forecast_new_runs, record_summary, track_record
from transfer_laws.registry.locks import (
    LOCK_KIND_PROCESS,
    Lease,
    law_lock,
    lock_kind,
    registry_lock,
)
from transfer_laws.registry.map_run import log_target_map
from transfer_laws.registry.reader import LawInputs, check_law_known, laws_for_run, read_law_inputs
from transfer_laws.registry.schema import (
    INPUTS_ARTIFACT,
    LAW_ALIAS,
    LAW_FIT_IN_MODEL,
    LAW_TAG_FINGERPRINT,
    LAW_TAG_LAW,
    LAW_TAG_REQUESTED_BY,
    LAW_TAG_SOURCE,
    LAW_TAG_TARGET,
    PLOTS_ARTIFACT,
    REFIT_EXPERIMENT,
    REFIT_PARAM_N_RUNS,
    REFIT_PARAM_READ_AT,
    REFIT_TAG_DEBRIS,
    REFIT_TAG_HEARTBEAT,
    REFIT_TAG_LOCK,
    REFIT_TAG_OWNER,
    ROLE_FINETUNE,
    TAG_INPUTS_DIGEST,
    law_model_name,
    law_name,
    parse_law,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.models.model import ModelInfo
    from typing_extensions import Unpack

from transfer_laws.registry.tracking import client_for, ensure_experiment, fluent_uri, resolve_tracking_uri

log = logging.getLogger(__name__)

STATUS_REGISTERED, STATUS_UNCHANGED, STATUS_FAILED = "registered", "unchanged", "failed"
STATUS_SUPERSEDED = "superseded"
"""The law's runs kept changing while it was fitted: no version now; the refit the last landing queued registers."""
CAS_ATTEMPTS = 3
"""Refits of newer inputs a refit tries before it leaves the law to the refit the latest landing queued."""
REFIT_STALE_S = 60.0
"""A RUNNING refit run whose heartbeat is older than this is dead whatever lock it held (it beats every
``HEARTBEAT_S``; compared with this host's clock, so hosts' clocks must agree to well within it)."""
HEARTBEAT_S = 5.0
"""How often a refit says, on its open refit run, that it is alive."""

_OWNER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class RefitResult:
    """The outcome of one refit."""

    law: str
    """The law refitted."""
    status: str
    """``registered`` (new version), ``unchanged`` (same inputs as ``@latest``) or ``failed``."""
    version: str | None
    """The new version, or the current ``@latest`` one when unchanged; None when failed."""
    fit: TransferLaw | None
    """The ``TransferLaw`` fitted (None when the fit failed)."""
    reason: str | None
    """Why the refit failed, when it did."""
    n_runs: int
    """Usable runs the reader found."""
    run_id: str | None = None
    """The refit run the new version was registered from (only when ``registered``)."""


def latest_version(client: MlflowClient, law: str) -> ModelVersion | None:
    """The version behind alias ``latest`` of the law's model, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(law_model_name(law), LAW_ALIAS)
    except MlflowException:
        return None


def _metric_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", str(name))


def law_metrics(fit: TransferLaw) -> dict[str, float]:
    """k, alpha, beta, every interval bound (``<name>_low``/``<name>_high``) and the model checks as metrics:
    ``cv_error_<method>`` per scored scratch-model candidate, ``runner_up_alpha``/``runner_up_beta`` (the best-scored
    candidate not chosen), ``scratch_resid_rms``/``_max`` and ``law_resid_rms``/``_max``."""
    metrics = {"k": float(fit.k), "alpha": float(fit.alpha), "beta": float(fit.beta)}
    for name, bounds in dict(getattr(fit, "intervals", {}) or {}).items():
        try:
            low, high = bounds
        except (TypeError, ValueError):
            continue
        metrics[f"{_metric_name(name)}_low"] = float(low)
        metrics[f"{_metric_name(name)}_high"] = float(high)
    checks = getattr(fit, "checks", {}) or {}
    scored = [c for c in checks.get("candidates", []) if c.get("cv_error") is not None]
    for cand in scored:
        metrics[f"cv_error_{_metric_name(cand['method'])}"] = float(cand["cv_error"])
    others = sorted((c for c in scored if not c.get("chosen")), key=lambda c: c["cv_error"])
    if others:
        for name in ("alpha", "beta"):
            if others[0].get(name) is not None:
                metrics[f"runner_up_{name}"] = float(others[0][name])
    for kind, prefix in (("scratch_residuals", "scratch_resid"), ("law_residuals", "law_resid")):
        summary = checks.get(kind) or {}
        for stat, suffix in (("rms", "rms"), ("max_abs", "max")):
            if summary.get(stat) is not None:
                metrics[f"{prefix}_{suffix}"] = float(summary[stat])
    return {k: v for k, v in metrics.items() if math.isfinite(v)}


def _report(law: str, fit: TransferLaw, inputs: LawInputs) -> dict[str, object]:
    return {
        "law": law,
        "fingerprint": fit.fingerprint,
        "input_run_ids": list(getattr(fit, "input_run_ids", None) or inputs.run_ids),
        "read_run_ids": inputs.run_ids,
        "excluded_by_reader": inputs.excluded,
        "excluded_by_fit": _jsonable(getattr(fit, "excluded", {})),
        "warnings": _jsonable(getattr(fit, "warnings", [])),
        "estimator": (getattr(fit, "checks", {}) or {}).get("estimator"),
        "checks": _jsonable(getattr(fit, "checks", {}) or {}),
    }


def _jsonable(value: object) -> object:
    return json.loads(json.dumps(value, default=str))


def _verify_logged(client: MlflowClient, run_id: str, model_id: str) -> None:
    """Everything the version points to is there (a version is only created after this passes)."""
    from mlflow.entities import LoggedModelStatus

    if INPUTS_ARTIFACT not in {a.path for a in client.list_artifacts(run_id)}:
        raise RuntimeError(f"refit run {run_id} lacks its report {INPUTS_ARTIFACT}")
    model = client.get_logged_model(model_id)
    if model.status != LoggedModelStatus.READY:
        raise RuntimeError(f"law model {model_id} is {model.status}, not READY")
    held = {Path(a.path).name for a in client.list_logged_model_artifacts(model_id, LAW_FIT_IN_MODEL)}
    if not {JSON_NAME, NPZ_NAME} <= held:
        raise RuntimeError(f"law model {model_id} lacks its fit folder ({LAW_FIT_IN_MODEL}: {sorted(held)})")


def _ensure_registered_model(client: MlflowClient, name: str, tags: dict[str, str]) -> None:
    """Create the law's model with its source and target tags; a model made before the tags existed gets them."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, tags=tags,
                                       description="Scaling law for transfer, refitted as runs land.")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        held = client.get_registered_model(name).tags or {}
        for key, value in tags.items():
            if held.get(key) != value:
                client.set_registered_model_tag(name, key, value)


def law_source_tags(law: str) -> dict[str, str]:
    """The source and target tags a law's model, versions and refit runs carry (MLflow's lists filter by them)."""
    source, target = parse_law(law)
    return {LAW_TAG_SOURCE: source, LAW_TAG_TARGET: target}


def update_target_map(client: MlflowClient, uri: str, law: str, version: str | None = None,
                      fit: TransferLaw | None = None) -> None:
    """Rewrite the transfer map of the law's target on its run (``registry.map_run``; ``fit``, the version's own,
    is not downloaded again); a failure costs the chart, never the version."""
    try:
        log_target_map(client, uri, parse_law(law)[1], known={(law, str(version)): fit} if fit is not None else None)
    except Exception:
        log.warning("could not update the transfer map of %s's target", law, exc_info=True)


def inputs_digest(inputs: LawInputs) -> str:
    """sha256 of the sorted ids of every run the reader found, used or excluded: the set a version covers."""
    ids = sorted({*inputs.run_ids, *inputs.excluded})
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def covers(version: ModelVersion | None, digest: str) -> TypeGuard[ModelVersion]:
    """Whether ``version`` was fitted on exactly the runs whose ``inputs_digest`` is ``digest``."""
    return version is not None and version.tags.get(TAG_INPUTS_DIGEST) == digest


def _log_refit_run(client: MlflowClient, uri: str, law: str, fit: TransferLaw, inputs: LawInputs,
                   settings: dict[str, int | str | bool], tags: dict[str, str]) -> tuple[str, ModelInfo]:
    """Log the fit on a refit run and verify it; returns (run id, logged-model info)."""
    import mlflow

    from transfer_laws.registry.law_model import log_law_model  # lazy: mlflow.pyfunc and pandas, ~3 s

    experiment_id = ensure_experiment(REFIT_EXPERIMENT, tracking_uri=uri)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "fit"
        fit.save(folder)
        plots = plot_law(fit, Path(tmp) / "plots") if settings["plots"] else []
        # Tags go in with the run itself: a refit killed at any later point is recognisable as such.
        tags = {**tags, REFIT_TAG_OWNER: _OWNER, REFIT_TAG_HEARTBEAT: str(int(time.time() * 1000))}
        with fluent_uri(uri), \
                mlflow.start_run(experiment_id=experiment_id, run_name=f"refit-{law}", tags=tags) as run, \
                Lease(lambda: client.set_tag(run.info.run_id, REFIT_TAG_HEARTBEAT, str(int(time.time() * 1000))),
                      HEARTBEAT_S, f"refit run of {law}"):
            run_id = run.info.run_id
            mlflow.log_params({**settings, REFIT_PARAM_N_RUNS: len(inputs.points)})
            mlflow.log_metrics(law_metrics(fit))
            for plot in plots:
                mlflow.log_artifact(str(plot), PLOTS_ARTIFACT)
            mlflow.log_dict(_report(law, fit, inputs), INPUTS_ARTIFACT)
            info = log_law_model(folder)
            _verify_logged(client, run_id, info.model_id)
    return run_id, info


def _pid_gone(owner: str) -> bool:
    """Whether ``host:pid`` names a process of this host that no longer exists."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, someone else's
        return False
    return False


def _dead(run: Run, held: str, now_ms: float) -> bool:
    """A RUNNING refit run is dead when it held the same cross-process lock we hold now (it cannot still be
    running), when its process on this host is gone, or when its heartbeat stopped ``REFIT_STALE_S`` ago."""
    tags = run.data.tags
    if held != LOCK_KIND_PROCESS and tags.get(REFIT_TAG_LOCK) == held:
        return True
    if _pid_gone(tags.get(REFIT_TAG_OWNER, "")):
        return True
    beat = tags.get(REFIT_TAG_HEARTBEAT, "")
    last = float(beat) if beat.isdigit() else float(run.info.start_time or now_ms)
    return now_ms - last > REFIT_STALE_S * 1000


def _close_debris(client: MlflowClient, law: str, held: str) -> list[str]:
    """Mark refit runs of ``law`` that a killed refit left RUNNING as KILLED (``_dead``), and fail their PENDING
    models. Returns the runs closed."""
    from mlflow.entities import LoggedModelStatus

    experiment = client.get_experiment_by_name(REFIT_EXPERIMENT)
    if experiment is None:
        return []
    flt = f"attributes.status = 'RUNNING' and tags.`{LAW_TAG_LAW}` = '{law}'"
    now_ms = time.time() * 1000
    closed: list[str] = []
    for run in client.search_runs([experiment.experiment_id], filter_string=flt, max_results=1000):
        if not _dead(run, held, now_ms):
            continue
        reason = "refit did not finish (killed); closed by a later refit of the law"
        client.set_tag(run.info.run_id, REFIT_TAG_DEBRIS, reason)
        client.set_terminated(run.info.run_id, "KILLED")
        closed.append(run.info.run_id)
    for run_id in closed:  # (a filter on status matches nothing in MLflow 3: filter by run, check status here)
        own = f"source_run_id = '{run_id}'"
        for model in client.search_logged_models([experiment.experiment_id], filter_string=own):
            if model.status == LoggedModelStatus.PENDING:
                client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
    if closed:
        log.warning("closed %d refit run(s) of %s left RUNNING by killed refits: %s", len(closed), law, closed)
    return closed


class _Stale(NamedTuple):
    """A refit lost the compare-and-set: the ``@latest`` and the runs read under the registry lock, to fit next."""

    latest: ModelVersion | None
    inputs: LawInputs


def _version_number(version: ModelVersion | None) -> str | None:
    return None if version is None else str(version.version)


def _register_if_current(client: MlflowClient, uri: str, reader: MlflowClient, law: str, digest: str,
                         seen: str | None, run_id: str, info: ModelInfo,
                         tags: dict[str, str]) -> tuple[str, ModelVersion] | _Stale:
    """Compare-and-set under the registry lock. The version is created when no version was registered since the
    refit read its runs (``seen`` is the ``@latest`` it saw before reading: every later version read later, so
    ours would go backwards), or else when the runs are still exactly the ones it fitted. Returns
    (``registered``, version) or (``unchanged``, ``@latest``), or ``_Stale`` with what to fit next."""
    name = law_model_name(law)
    with registry_lock(client, law):
        latest = latest_version(client, law)
        if covers(latest, digest):  # a racing refit registered these very runs first
            return STATUS_UNCHANGED, latest
        if _version_number(latest) != seen:
            current = read_law_inputs(law, reader)
            if inputs_digest(current) != digest:
                return _Stale(latest, current)
        with fluent_uri(uri):  # a SQL registry looks the logged model up in the global store
            version = client.create_model_version(
                name, info.model_uri, run_id=run_id, tags=tags,
                model_id=info.model_id,  # a server refuses a models:/m-... source without the model id
            )
    # No alias to move: MLflow reserves ``@latest`` and resolves it to the highest version, which is this one.
    return STATUS_REGISTERED, version


class RefitOptions(TypedDict, total=False):
    """``refit_law``'s settings, passed on by the callers that refit many laws (``refit_after_run``, ``watch``, the
    service)."""

    bootstrap: int
    seed: int
    d_e_method: str
    plots: bool
    lock_timeout_s: float
    requested_by: str | None
    read_uri: str | None


def refit_law(
    law: str,
    *,
    tracking_uri: str | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    d_e_method: str = "auto",
    plots: bool = True,
    lock_timeout_s: float = 600.0,
    requested_by: str | None = None,
    read_uri: str | None = None,
) -> RefitResult:
    """Refit ``law`` now and register a new version if the runs it reads changed (see the module docstring).

    ``plots=False`` skips the plots (SVG charts and their HTML page under ``plots/``; a few tenths of a second).
    ``requested_by`` (the law page's signed-in user) is recorded as a tag on the refit run and the new version.
    ``read_uri`` reads the runs from that store instead (the server's own refits read its backend store directly:
    the same rows, without serialising hundreds of runs to JSON and back inside one process).
    """
    law_name(*parse_law(law))  # a malformed law (or one with a quote, say) is a ValueError before anything is read
    uri = resolve_tracking_uri(tracking_uri)
    client = client_for(uri)
    held = lock_kind(uri)
    settings: dict[str, int | str | bool] = {"bootstrap": bootstrap, "seed": seed, "d_e_method": d_e_method,
                                             "plots": plots}
    with law_lock(law, uri, lock_timeout_s):
        _close_debris(client, law, held)
        reader = client_for(read_uri) if read_uri else client
        latest = latest_version(client, law)  # before the read: any version registered after this read later
        read_at = int(time.time() * 1000)
        inputs = read_law_inputs(law, reader)
        if not any(p.role == ROLE_FINETUNE for p in inputs.points):  # a typo is bad input, not a failed fit
            check_law_known(law, reader, has_runs=bool(inputs.points or inputs.excluded))
        for _ in range(CAS_ATTEMPTS):
            digest = inputs_digest(inputs)
            n_runs = len(inputs.points)
            if covers(latest, digest):
                return RefitResult(law, STATUS_UNCHANGED, str(latest.version), None, None, n_runs)
            _forecast(client, uri, law, latest, inputs, reader)  # before any version that includes these runs
            try:
                fit = fit_transfer_law(inputs.points, d_e_method=d_e_method, bootstrap=bootstrap,
                                       seed=seed)
            except FitError as exc:
                return RefitResult(law, STATUS_FAILED, None, None, str(exc), n_runs)
            _leave_one_out(fit, inputs)
            _track_record(fit, reader, law)
            tags = {LAW_TAG_LAW: law, LAW_TAG_FINGERPRINT: fit.fingerprint, TAG_INPUTS_DIGEST: digest,
                    REFIT_TAG_LOCK: held, **law_source_tags(law)}
            if requested_by:
                tags[LAW_TAG_REQUESTED_BY] = requested_by
            _ensure_registered_model(client, law_model_name(law), law_source_tags(law))
            run_id, info = _log_refit_run(client, uri, law, fit, inputs, {**settings, REFIT_PARAM_READ_AT: read_at},
                                          tags)
            outcome = _register_if_current(client, uri, reader, law, digest, _version_number(latest), run_id, info,
                                           {k: v for k, v in tags.items() if k != REFIT_TAG_LOCK})
            if not isinstance(outcome, _Stale):
                status, version = outcome
                if status == STATUS_REGISTERED:  # the law, its intervals and warnings on the version's own page
                    from transfer_laws.registry.law_model import annotate_version  # lazy: mlflow.pyfunc, pandas

                    annotate_version(client, law, str(version.version), fit, inputs, model_id=info.model_id,
                                     run_id=run_id)
                    if plots:
                        update_target_map(client, uri, law, str(version.version), fit)
                return RefitResult(law, status, str(version.version), fit, None, n_runs,
                                   run_id if status == STATUS_REGISTERED else None)
            client.set_tag(run_id, REFIT_TAG_DEBRIS,
                           "superseded: the law's runs changed before its version was created")
            latest, inputs = outcome  # read under the lock just now: fit those
            read_at = int(time.time() * 1000)
        return RefitResult(law, STATUS_SUPERSEDED, None, None, "the law's runs kept changing while it was refitted",
                           len(inputs.points))


def _forecast(client: MlflowClient, uri: str, law: str, latest: ModelVersion | None, inputs: LawInputs,
              reader: MlflowClient) -> None:
    """The forecast of every run ``latest`` has not seen (``registry/forecast.py``); never a reason to fail."""
    try:
        forecast_new_runs(client, uri, law, latest, inputs, reader)
    except Exception:
        log.warning("could not forecast the new runs of %s", law, exc_info=True)


def _leave_one_out(fit: TransferLaw, inputs: LawInputs) -> None:
    """The version's leave-one-out calibration, in ``fit.checks["loo"]`` (so in ``law.json``)."""
    try:
        fit.checks["loo"] = leave_one_out(fit, inputs.points)
    except Exception:
        log.warning("leave-one-out of %s failed", inputs.law, exc_info=True)


def _track_record(fit: TransferLaw, reader: MlflowClient, law: str) -> None:
    """How the earlier versions' forecasts fared so far, in ``fit.checks["track_record"]`` (law.json, the card)."""
    try:
        fit.checks["track_record"] = record_summary(track_record(reader, law))
    except Exception:
        log.warning("could not read the track record of %s", law, exc_info=True)


def attach_plots(client: MlflowClient, result: RefitResult) -> None:
    """Render the fit's SVG plots and log them under ``plots/`` of the refit run a version was registered from."""
    if result.fit is None:
        raise ValueError(f"no fit to plot for {result.law} ({result.status}: {result.reason})")
    with tempfile.TemporaryDirectory() as tmp:
        for plot in plot_law(result.fit, Path(tmp)):
            client.log_artifact(result.run_id, str(plot), PLOTS_ARTIFACT)
    update_target_map(client, client.tracking_uri, result.law, result.version, result.fit)


def refit_after_run(run_id: str, tracking_uri: str | None = None,
                    **options: Unpack[RefitOptions]) -> list[RefitResult]:
    """Refit, in this process, every law the landed run feeds (the embedded store's hook)."""
    uri = resolve_tracking_uri(tracking_uri)
    return [refit_law(law, tracking_uri=uri, **options) for law in laws_for_run(run_id, client_for(uri))]
