"""The refit service: read a law's runs, fit, and register a new law version when the inputs changed.

``refit_law`` does one refit under the law's lock (``transfer_laws.registry.locks``): it reads every finished run
of the law, fits ``D_T = k * D_F^alpha * N^beta`` with the fitter, and compares the fit's fingerprint of its
eligible inputs with the ``transfer.fingerprint`` tag of the version behind alias ``latest``. Same inputs: status
``unchanged``. New inputs: everything (fit folder, plots, input run ids, metrics, the pyfunc law model) is logged on
a run in experiment ``transfer-laws-refits`` first, checked, and only then is a model version created;
``@latest`` (MLflow's reserved alias for the highest version) then points to it. A refit that dies half way
leaves no version, and the next landing simply refits again.

``RefitService`` runs refits on a background thread; landings only set a per-law dirty flag, so a burst of
landings coalesces into a few refits, the last of which reads every run.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer_laws.registry.locks import law_lock
from transfer_laws.registry.reader import LawInputs, known_laws, laws_for_run, read_law_inputs, to_run_results
from transfer_laws.registry.schema import (
    LAW_ALIAS,
    LAW_TAG_FINGERPRINT,
    LAW_TAG_LAW,
    LAW_TAG_REQUESTED_BY,
    law_model_name,
)
from transfer_laws.registry.tracking import ensure_experiment, resolve_tracking_uri

log = logging.getLogger(__name__)

REFIT_EXPERIMENT = "transfer-laws-refits"
PARAM_READ_AT = "inputs_read_at_ms"
"""Refit-run param: when the inputs were read (ms); runs that ended later are not covered by the version."""
INPUTS_ARTIFACT = "inputs.json"
STATUS_REGISTERED, STATUS_UNCHANGED, STATUS_FAILED = "registered", "unchanged", "failed"

_fluent_lock = threading.Lock()


@dataclass
class RefitResult:
    """The outcome of one refit."""

    law: str
    """The law refitted."""
    status: str
    """``registered`` (new version), ``unchanged`` (same inputs as ``@latest``) or ``failed``."""
    version: str | None
    """The new version, or the current ``@latest`` one when unchanged; None when failed."""
    fit: Any | None
    """The ``TransferLaw`` fitted (None when the fit failed)."""
    reason: str | None
    """Why the refit failed, when it did."""
    n_runs: int
    """Usable runs the reader found."""


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def latest_version(client: Any, law: str) -> Any | None:
    """The version behind alias ``latest`` of the law's model, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(law_model_name(law), LAW_ALIAS)
    except MlflowException:
        return None


def _metric_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", str(name))


def law_metrics(fit: Any) -> dict[str, float]:
    """k, alpha, beta and every interval bound (``<name>_low``/``<name>_high``) as metrics."""
    metrics = {"k": float(fit.k), "alpha": float(fit.alpha), "beta": float(fit.beta)}
    for name, bounds in dict(getattr(fit, "intervals", {}) or {}).items():
        try:
            low, high = bounds
        except (TypeError, ValueError):
            continue
        metrics[f"{_metric_name(name)}_low"] = float(low)
        metrics[f"{_metric_name(name)}_high"] = float(high)
    return {k: v for k, v in metrics.items() if math.isfinite(v)}


def _report(law: str, fit: Any, inputs: LawInputs) -> dict[str, Any]:
    return {
        "law": law,
        "fingerprint": fit.fingerprint,
        "input_run_ids": list(getattr(fit, "input_run_ids", None) or inputs.run_ids),
        "read_run_ids": inputs.run_ids,
        "excluded_by_reader": inputs.excluded,
        "excluded_by_fit": _jsonable(getattr(fit, "excluded", {})),
        "warnings": _jsonable(getattr(fit, "warnings", [])),
    }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _activate(uri: str) -> None:
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


def _verify_logged(client: Any, run_id: str, model_id: str) -> None:
    """Everything the version points to is there (a version is only created after this passes)."""
    from mlflow.entities import LoggedModelStatus

    names = {a.path for a in client.list_artifacts(run_id)}
    missing = {"fit", INPUTS_ARTIFACT} - names
    if missing:
        raise RuntimeError(f"refit run {run_id} lacks artifacts {sorted(missing)}")
    model = client.get_logged_model(model_id)
    if model.status != LoggedModelStatus.READY:
        raise RuntimeError(f"law model {model_id} is {model.status}, not READY")


def _ensure_registered_model(client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description="Scaling law for transfer, refitted as runs land.")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def _register(client: Any, uri: str, law: str, fit: Any, inputs: LawInputs, settings: dict[str, Any],
              requested_by: str | None = None) -> str:
    """Log the fit on a refit run, verify, then create the version; returns the version."""
    import mlflow

    from transfer_laws.registry.fit import plot_law
    from transfer_laws.registry.law_model import log_law_model

    experiment_id = ensure_experiment(REFIT_EXPERIMENT, tracking_uri=uri)
    name = law_model_name(law)
    _ensure_registered_model(client, name)
    with tempfile.TemporaryDirectory() as tmp, _fluent_lock:
        folder = Path(tmp) / "fit"
        fit.save(folder)
        plots = plot_law(fit, Path(tmp) / "plots") if settings["plots"] else []
        _activate(uri)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"refit-{law}") as run:
            run_id = run.info.run_id
            tags = {LAW_TAG_LAW: law, LAW_TAG_FINGERPRINT: fit.fingerprint}
            if requested_by:
                tags[LAW_TAG_REQUESTED_BY] = requested_by
            mlflow.set_tags(tags)
            mlflow.log_params({**settings, "n_runs": len(inputs.points)})
            mlflow.log_metrics(law_metrics(fit))
            mlflow.log_artifacts(str(folder), "fit")
            for plot in plots:
                mlflow.log_artifact(str(plot), "plots")
            mlflow.log_dict(_report(law, fit, inputs), INPUTS_ARTIFACT)
            info = log_law_model(folder)
            _verify_logged(client, run_id, info.model_id)
    version = client.create_model_version(
        name, info.model_uri, run_id=run_id, tags=tags,
        model_id=info.model_id,  # a server refuses a models:/m-... source without the model id
    )
    # No alias to move: MLflow reserves ``@latest`` and resolves it to the highest version, which is this one
    # because versions are only created here, under the law's lock.
    return str(version.version)


def refit_law(
    law: str,
    *,
    tracking_uri: str | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    d_e_method: str = "interpolate",
    plots: bool = True,
    lock_timeout_s: float = 600.0,
    requested_by: str | None = None,
) -> RefitResult:
    """Refit ``law`` now and register a new version if its eligible inputs changed (see the module docstring).

    ``plots=False`` skips the PNG plots (the slowest step, seconds of matplotlib) for latency-bound callers.
    ``requested_by`` (the law page's signed-in user) is recorded as a tag on the refit run and the new version.
    """
    from transfer_laws.registry.fit import FitError, fit_transfer_law

    law_model_name(law)  # a malformed law is a ValueError before anything is read
    uri = resolve_tracking_uri(tracking_uri)
    client = _client(uri)
    with law_lock(law, uri, lock_timeout_s):
        read_at = int(time.time() * 1000)
        inputs = read_law_inputs(law, client)
        n_runs = len(inputs.points)
        try:
            fit = fit_transfer_law(to_run_results(inputs.points), d_e_method=d_e_method, bootstrap=bootstrap, seed=seed)
        except FitError as exc:
            return RefitResult(law, STATUS_FAILED, None, None, str(exc), n_runs)
        latest = latest_version(client, law)
        if latest is not None and latest.tags.get(LAW_TAG_FINGERPRINT) == fit.fingerprint:
            return RefitResult(law, STATUS_UNCHANGED, str(latest.version), fit, None, n_runs)
        settings = {"bootstrap": bootstrap, "seed": seed, "d_e_method": d_e_method, "plots": plots}
        settings[PARAM_READ_AT] = read_at
        version = _register(client, uri, law, fit, inputs, settings, requested_by)
        return RefitResult(law, STATUS_REGISTERED, version, fit, None, n_runs)


def refit_after_run(run_id: str, tracking_uri: str | None = None, **options: Any) -> list[RefitResult]:
    """Refit, in this process, every law the landed run feeds (the embedded store's hook)."""
    uri = resolve_tracking_uri(tracking_uri)
    return [refit_law(law, tracking_uri=uri, **options) for law in laws_for_run(run_id, _client(uri))]


class RefitService:
    """Refits on a background thread; landings mark laws dirty, so bursts coalesce.

    Triggers (a run id, a checkpoint version, a law) are resolved to laws on the worker thread, so ``enqueue_*``
    costs a lock and a list append on the caller's thread.
    """

    def __init__(self, tracking_uri: str, *, history: int = 100, **options: Any) -> None:
        self.tracking_uri = tracking_uri
        self.options = options
        self.results: deque[RefitResult] = deque(maxlen=history)
        self._triggers: list[Callable[[], list[str]]] = []
        self._dirty: dict[str, None] = {}
        self._busy = False
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="transfer-laws-refit", daemon=True)
        self._thread.start()

    def enqueue(self, law: str) -> None:
        """Mark ``law`` for a refit."""
        self._push(lambda: [law])

    def enqueue_run(self, run_id: str) -> None:
        """A run landed: refit the laws it feeds."""
        self._push(lambda: laws_for_run(run_id, _client(self.tracking_uri)))

    def enqueue_resolver(self, resolve: Callable[[], list[str]]) -> None:
        """Refit the laws ``resolve()`` returns (called on the worker thread)."""
        self._push(resolve)

    def _push(self, resolve: Callable[[], list[str]]) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("refit service is closed")
            self._triggers.append(resolve)
            self._cond.notify_all()

    def wait_idle(self, timeout_s: float = 60.0) -> bool:
        """Block until nothing is queued or running; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._triggers or self._dirty or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout_s: float = 60.0) -> None:
        """Finish queued work and stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout_s)

    def _next_law(self) -> str | None:
        with self._cond:
            while not (self._triggers or self._dirty or self._closed):
                self._cond.wait()
            triggers, self._triggers = self._triggers, []
            self._busy = True
        for resolve in triggers:
            try:
                laws = resolve()
            except Exception:  # a lookup that fails must not kill the worker
                log.exception("could not resolve a refit trigger")
                continue
            with self._cond:
                self._dirty.update(dict.fromkeys(laws))
        with self._cond:
            if not self._dirty:
                self._busy = False
                self._cond.notify_all()
                return None
            law = next(iter(self._dirty))
            del self._dirty[law]
            return law

    def _loop(self) -> None:
        while True:
            law = self._next_law()
            if law is not None:
                self._refit(law)
            with self._cond:
                if self._closed and not (self._triggers or self._dirty):
                    self._busy = False
                    self._cond.notify_all()
                    return

    def _refit(self, law: str) -> None:
        try:
            result = refit_law(law, tracking_uri=self.tracking_uri, **self.options)
        except Exception as exc:  # the next landing retries; the server keeps serving
            log.exception("refit of %s crashed", law)
            result = RefitResult(law, STATUS_FAILED, None, None, f"{type(exc).__name__}: {exc}", 0)
        self.results.append(result)
        with self._cond:
            self._busy = False
            self._cond.notify_all()


_services: dict[str, RefitService] = {}
_services_guard = threading.Lock()


def get_service(tracking_uri: str, **options: Any) -> RefitService:
    """The process's refit service for ``tracking_uri`` (created on first use)."""
    with _services_guard:
        service = _services.get(tracking_uri)
        if service is None:
            service = _services[tracking_uri] = RefitService(tracking_uri, **options)
        return service


def uncovered_laws(client: Any) -> list[str]:
    """Laws with a finished run that ended after their ``@latest`` version read its inputs (or with no version)."""
    from transfer_laws.registry.reader import active_experiment_ids, law_filters

    ids = active_experiment_ids(client)
    stale: list[str] = []
    for law in known_laws(client):
        latest = latest_version(client, law)
        if latest is None:
            stale.append(law)
            continue
        read_at = client.get_run(latest.run_id).data.params.get(PARAM_READ_AT, "0")
        for flt in law_filters(law):
            newer = f"{flt} and attributes.end_time >= {int(read_at)}"
            page = client.search_runs(ids, filter_string=newer, max_results=1)
            if page:
                stale.append(law)
                break
    return stale


def watch(
    tracking_uri: str | None = None,
    interval_s: float = 30.0,
    max_iterations: int | None = None,
    **options: Any,
) -> list[RefitResult]:
    """Poll for finished runs not covered by their law's latest version and refit (at least once per landing).

    For deployments without the app plugin. Runs forever unless ``max_iterations`` bounds it; returns the results.
    """
    uri = resolve_tracking_uri(tracking_uri)
    client = _client(uri)
    results: list[RefitResult] = []
    iteration = 0
    while max_iterations is None or iteration < max_iterations:
        if iteration:
            time.sleep(interval_s)
        for law in uncovered_laws(client):
            try:
                results.append(refit_law(law, tracking_uri=uri, **options))
            except Exception as exc:  # keep watching; the next poll retries
                log.exception("refit of %s crashed", law)
                results.append(RefitResult(law, STATUS_FAILED, None, None, f"{type(exc).__name__}: {exc}", 0))
        iteration += 1
    return results
