"""Coverage and the ``watch`` poller: which laws' runs are not the ones their latest version read, and refitting them.

Coverage is decided by run ids, never clocks (``refit.inputs_digest``). ``watch`` is for deployments without the
server plugin; the server's start sweep (``refit_service.sweep_on_start``) uses ``uncovered_laws`` too.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from transfer_laws.registry.reader import known_laws, read_law_inputs
from transfer_laws.registry.refit import (
    STATUS_FAILED,
    STATUS_REGISTERED,
    RefitOptions,
    RefitResult,
    covers,
    inputs_digest,
    latest_version,
    refit_law,
)
from transfer_laws.registry.tracking import client_for, resolve_tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from typing_extensions import Unpack

log = logging.getLogger(__name__)


def coverage(client: MlflowClient, law: str) -> tuple[bool, str]:
    """(whether ``@latest`` covers exactly the runs the reader finds now, their digest)."""
    digest = inputs_digest(read_law_inputs(law, client))
    return covers(latest_version(client, law), digest), digest


def uncovered_laws(client: MlflowClient) -> dict[str, str]:
    """Laws whose runs are not exactly the ones their ``@latest`` version read (or that have no version yet),
    with the digest of their runs now. A law that cannot be read is logged and skipped, never fatal."""
    stale: dict[str, str] = {}
    for law in known_laws(client):
        try:
            covered, digest = coverage(client, law)
        except Exception:  # one unreadable law must not stop the others
            log.exception("could not check whether %s is covered", law)
            continue
        if not covered:
            stale[law] = digest
    return stale


def watch(
    tracking_uri: str | None = None,
    interval_s: float = 30.0,
    max_iterations: int | None = None,
    **options: Unpack[RefitOptions],
) -> list[RefitResult]:
    """Poll for laws whose runs are not the ones their latest version read, and refit (at least once per landing).

    A law whose refit did not register (fit failed, or its only new runs are excluded) is not refitted again
    until its runs change. For deployments without the app plugin. Runs forever unless ``max_iterations`` bounds
    it; returns the results.
    """
    uri = resolve_tracking_uri(tracking_uri)
    client = client_for(uri)
    results: list[RefitResult] = []
    tried: dict[str, str] = {}  # law -> digest of the runs its last refit saw without covering them
    iteration = 0
    while max_iterations is None or iteration < max_iterations:
        if iteration:
            time.sleep(interval_s)
        try:
            stale = uncovered_laws(client)
        except Exception as exc:  # the store is down: keep watching
            log.warning("watch: could not list laws: %s", exc)
            stale = {}
        for law, digest in stale.items():
            if tried.get(law) == digest:
                continue
            try:
                result = refit_law(law, tracking_uri=uri, **options)
            except Exception as exc:  # keep watching; the next poll retries
                log.exception("refit of %s crashed", law)
                result = RefitResult(law, STATUS_FAILED, None, None, f"{type(exc).__name__}: {exc}", 0)
            else:
                if result.status != STATUS_REGISTERED:
                    tried[law] = digest
            results.append(result)
        iteration += 1
    return results
