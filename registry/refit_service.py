"""The server's background refit service: landings mark laws dirty, one worker thread refits them.

One ``RefitService`` per law store (``get_service``; a server has exactly one, at most ``MAX_SERVICES`` per
process), fed by the run-landed hook, signed registry webhooks and, at start and every ``SWEEP_EVERY_S`` after, a
sweep of every law its latest version does not cover (``sweep_on_start``). Each refit is ``refit.refit_law``;
bursts of landings coalesce into a few refits, the last of which reads every run.

A trigger that cannot be resolved, or a refit that crashes (the database restarting under it, say), is retried
with backoff (``RETRY_DELAYS_S``, about ``sum(RETRY_DELAYS_S)`` in all); what an outage longer than that leaves
uncovered, the next periodic sweep refits. So a landing is covered at most ``SWEEP_EVERY_S`` after the store is
back, and within seconds when the outage is short.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from transfer_laws.registry.reader import laws_for_run
from transfer_laws.registry.refit import (
    STATUS_FAILED,
    STATUS_REGISTERED,
    RefitOptions,
    RefitResult,
    attach_plots,
    refit_law,
)
from transfer_laws.registry.tracking import TrackingError, check_reachable, client_for, server_stores
from transfer_laws.registry.watch import uncovered_laws

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger(__name__)

SETTLE_S = 0.25
"""A refit service starts a refit once no landing came for this long ..."""
MAX_SETTLE_S = 2.0
"""... or once it has waited this long, so a steady stream of landings still gets refits."""
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 60.0, 120.0)
"""Waits before each retry of a trigger that could not be resolved or a refit that crashed (about 5 minutes)."""
SWEEP_EVERY_S = 600.0
"""Between sweeps for laws their latest version does not cover (after the start sweep)."""


class RefitService:
    """Refits on a background thread; landings mark laws dirty, so bursts coalesce.

    Triggers (a run id, a checkpoint version, a law) are resolved to laws on the worker thread, so ``enqueue_*``
    costs a lock and a list append on the caller's thread.

    The plots (SVG charts, a few tenths of a second) do not delay the version: each refit registers
    without them, and the plots of a law's newest version are added to its refit run once no refit is waiting
    (``plots=False`` in the options turns them off altogether).
    """

    def __init__(self, tracking_uri: str, *, history: int = 100, **options: Unpack[RefitOptions]) -> None:
        self.tracking_uri = tracking_uri
        self.plots = bool(options.pop("plots", True))
        # Inside ``mlflow server`` runs are read from its backend store directly (when its registry lives there
        # too); everything else goes over REST.
        backend, registry = server_stores()
        if registry and registry != backend:
            backend = None
        self.read_uri = options.pop("read_uri", None) or backend or tracking_uri
        self.options: RefitOptions = {**options, "plots": False, "read_uri": self.read_uri}
        self.results: deque[RefitResult] = deque(maxlen=history)
        self._triggers: list[tuple[int, Callable[[], list[str]]]] = []  # (tries so far, resolver)
        self._later: list[tuple[float, int, Callable[[], list[str]]]] = []  # retries: (due, tries so far, resolver)
        self._dirty: dict[str, None] = {}
        self._plots: dict[str, RefitResult] = {}  # law -> its newest registered refit still without plots
        self._crashes: dict[str, int] = {}  # law -> retries of its crashed refit so far
        self._pushes = 0
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
        self._push(lambda: laws_for_run(run_id, client_for(self.read_uri)))

    def enqueue_resolver(self, resolve: Callable[[], list[str]]) -> None:
        """Refit the laws ``resolve()`` returns (called on the worker thread)."""
        self._push(resolve)

    def _push(self, resolve: Callable[[], list[str]]) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("refit service is closed")
            self._triggers.append((0, resolve))
            self._pushes += 1
            self._cond.notify_all()

    def _retry(self, tries: int, resolve: Callable[[], list[str]], what: str) -> None:
        """Queue ``resolve`` again after its backoff delay, unless it has had all its retries."""
        if tries >= len(RETRY_DELAYS_S):
            log.error("giving up on %s after %d tries; the next sweep retries it", what, tries + 1)
            return
        delay = RETRY_DELAYS_S[tries]
        log.warning("retrying %s in %.1f s (try %d of %d)", what, delay, tries + 2, len(RETRY_DELAYS_S) + 1)
        with self._cond:
            self._later.append((time.monotonic() + delay, tries + 1, resolve))
            self._cond.notify_all()

    def _due(self) -> float | None:
        """Move retries whose time has come to the triggers; seconds until the next one (None: none left). Holds
        ``_cond``."""
        now = time.monotonic()
        due = [item for item in self._later if item[0] <= now]
        if due:
            self._later = [item for item in self._later if item[0] > now]
            self._triggers.extend((tries, resolve) for _, tries, resolve in due)
        return min((item[0] for item in self._later), default=now) - now if self._later else None

    def wait_idle(self, timeout_s: float = 60.0) -> bool:
        """Block until nothing is queued or running (plots included); False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._triggers or self._dirty or self._busy or self._plots:
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

    def _settle(self) -> None:
        """While landings keep arriving (a burst), wait for a pause of ``SETTLE_S`` before reading, at most
        ``MAX_SETTLE_S``: the refit then reads the whole burst instead of its first runs. Holds ``_cond``."""
        start = time.monotonic()
        while self._triggers and not self._closed and time.monotonic() - start < MAX_SETTLE_S:
            seen = self._pushes
            self._cond.wait(SETTLE_S)
            if self._pushes == seen:
                return

    def _next_law(self) -> str | None:
        with self._cond:
            while True:
                left = self._due()  # retries whose time has come join the triggers first
                if self._triggers or self._dirty or self._closed or self._plots:
                    break
                self._cond.wait(left)
            self._settle()
            triggers, self._triggers = self._triggers, []
            self._busy = True
        for tries, resolve in triggers:
            try:
                laws = resolve()
            except Exception as exc:  # a failed lookup (the store restarting) must lose neither worker nor landing
                log.warning("could not resolve a refit trigger: %s: %s", type(exc).__name__, exc)
                self._retry(tries, resolve, "a refit trigger")
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
            else:
                self._plot_one()
            with self._cond:
                if self._closed and not (self._triggers or self._dirty or self._plots):
                    self._busy = False
                    self._cond.notify_all()
                    return

    def _plot_one(self) -> None:
        """Add the plots of one law's newest version to its refit run (only when no refit is waiting)."""
        with self._cond:
            if not self._plots or self._triggers or self._dirty:
                return
            law = next(iter(self._plots))
            result = self._plots.pop(law)
            self._busy = True
        try:
            attach_plots(client_for(self.tracking_uri), result)
        except Exception:  # a plot is a picture: a failure costs the picture, never the version
            log.exception("plots of %s version %s failed", law, result.version)
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def _refit(self, law: str) -> None:
        try:
            result = refit_law(law, tracking_uri=self.tracking_uri, **self.options)
            self._crashes.pop(law, None)
        except Exception as exc:  # retried with backoff; the server keeps serving
            log.exception("refit of %s crashed", law)
            result = RefitResult(law, STATUS_FAILED, None, None, f"{type(exc).__name__}: {exc}", 0)
            tries = self._crashes[law] = self._crashes.get(law, -1) + 1
            if tries >= len(RETRY_DELAYS_S):
                del self._crashes[law]
            self._retry(tries, lambda: [law], f"the refit of {law}")
        self.results.append(result)
        with self._cond:
            if self.plots and result.status == STATUS_REGISTERED and result.run_id:
                self._plots.pop(law, None)
                self._plots[law] = result  # supersedes an older version's pending plots
            self._busy = False
            self._cond.notify_all()


_services: dict[str, RefitService] = {}
_services_guard = threading.Lock()
MAX_SERVICES = 4
"""Refit services one process may start: one per law store it serves (a server has exactly one)."""


def get_service(tracking_uri: str, **options: Unpack[RefitOptions]) -> RefitService:
    """The process's refit service for ``tracking_uri`` (created on first use, at most ``MAX_SERVICES``)."""
    with _services_guard:
        service = _services.get(tracking_uri)
        if service is None:
            if len(_services) >= MAX_SERVICES:
                raise RuntimeError(f"refusing a refit service for {tracking_uri}: this process already serves "
                                   f"{len(_services)} stores ({', '.join(_services)})")
            service = _services[tracking_uri] = RefitService(tracking_uri, **options)
        return service


def wait_for_server(uri: str, timeout_s: float = 300.0) -> bool:
    """Poll ``uri``'s /health until it answers (the server's start sweep runs before it listens)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            check_reachable(uri, timeout_s=5.0)
            return True
        except TrackingError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)


def sweep_on_start(service: RefitService, every_s: float | None = SWEEP_EVERY_S) -> None:
    """Queue a refit of every law its ``@latest`` does not cover (what a crash or restart left pending), now and
    every ``every_s`` after (None: only now), so an outage longer than the retries is covered too."""

    def resolve() -> list[str]:
        if not wait_for_server(service.tracking_uri):
            log.warning("start sweep skipped: %s did not answer", service.tracking_uri)
            return []
        laws = list(uncovered_laws(client_for(service.read_uri)))
        if laws:
            log.info("refitting %d law(s) not covered by their latest version: %s", len(laws), laws)
        return laws

    service.enqueue_resolver(resolve)
    if every_s is not None:
        threading.Thread(target=_sweep_every, args=(service, every_s, resolve), name="transfer-laws-sweep",
                         daemon=True).start()


def _sweep_every(service: RefitService, every_s: float, resolve: Callable[[], list[str]]) -> None:
    while True:
        time.sleep(every_s)
        try:
            service.enqueue_resolver(resolve)
        except RuntimeError:  # the service was closed
            return
