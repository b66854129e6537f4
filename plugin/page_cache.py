"""The law page's memory: each law's view and fit, built once per law version and reused by every request.

A law's entry is keyed by what its registered model says about it (the model's ``last_updated_timestamp`` and its
latest versions, which one paginated ``search_registered_models`` returns for every law at once), so a new version
invalidates it; a law's runs can also change without a version (a refit that could not fit), so an entry is rebuilt
after ``VIEW_TTL_S`` at the latest (staggered, so 100 laws do not expire together). Anything derived from an entry
(the page's section, the JSON) is kept on it, and what is derived from many laws at once (the transfer maps) is
kept per set of entries (``across``). One build per law at a time: concurrent requests for a cold law wait
for the first one's result instead of each reading the store.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias, TypeVar, cast

from transfer_laws.plugin.page_data import LawView, law_models, law_view
from transfer_laws.plugin.page_fit import FitView, fit_view

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import RegisteredModel

ModelKey: TypeAlias = "tuple[int | None, tuple[tuple[str, int | None], ...]]"
"""What a law's registered model says of its versions: last update, and (version, last update) of each latest."""
T = TypeVar("T")

VIEW_TTL_S = 120.0
"""Longest time a law's runs on the page may lag the store when no new version was registered."""
MEMO_KEPT = 16
"""Results derived from many laws at once (the transfer maps, a rendered page of a few MB) kept, newest first."""
log = logging.getLogger(__name__)


@dataclass
class Entry:
    """One law as last built: its key, when it expires, and what requests derived from it."""

    key: ModelKey
    expires: float
    view: LawView
    fit: FitView
    derived: dict[Hashable, object] = field(default_factory=dict)


def _key(model: RegisteredModel) -> ModelKey:
    versions = tuple(sorted((str(v.version), v.last_updated_timestamp) for v in model.latest_versions or []))
    return model.last_updated_timestamp, versions


class LawCache:
    """Entries of every law of one store (``entries``), built on demand and shared by all requests."""

    def __init__(self, ttl_s: float = VIEW_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, Entry] = {}
        self._memo: OrderedDict[Hashable, object] = OrderedDict()
        self._building: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def entries(self, client: MlflowClient) -> list[Entry]:
        """Every law's entry, sorted by law; a law whose view cannot be built is logged and left out."""
        models = law_models(client)
        with self._lock:  # forget laws whose model is gone
            for name in set(self._entries) - {m.name for m in models}:
                del self._entries[name]
        out = [entry for model in models if (entry := self._entry(client, model)) is not None]
        return sorted(out, key=lambda entry: entry.view.law)

    def _fresh(self, name: str, key: ModelKey) -> Entry | None:
        with self._lock:
            entry = self._entries.get(name)
        return entry if entry is not None and entry.key == key and entry.expires > time.monotonic() else None

    def _entry(self, client: MlflowClient, model: RegisteredModel) -> Entry | None:
        key = _key(model)
        entry = self._fresh(model.name, key)
        if entry is not None:
            return entry
        with self._lock:
            building = self._building.setdefault(model.name, threading.Lock())
        with building:
            entry = self._fresh(model.name, key)  # built by the request we waited for
            if entry is not None:
                return entry
            try:
                view = law_view(client, model.name)
                fit = fit_view(client, view)
            except Exception:  # one crafted or broken model (e.g. a quote in its name) must not hide the rest
                log.warning("law page: skipping registered model %r", model.name, exc_info=True)
                return None
            entry = Entry(key, time.monotonic() + self.ttl_s * random.uniform(0.75, 1.25), view, fit)
            with self._lock:
                self._entries[model.name] = entry
            return entry

    def across(self, entries: list[Entry], what: Hashable, make: Callable[[], T]) -> T:
        """``make()`` once per set of entries (as built: a rebuilt entry is a new set) and ``what`` (e.g. the transfer
        maps of those laws for one query string); the newest ``MEMO_KEPT`` results are kept. ``what`` names one
        kind of result: what ``make`` returned for it is what it gets back."""
        key = (what, tuple((entry.view.law, entry.key, entry.expires) for entry in entries))
        with self._lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return cast(T, self._memo[key])
        value = make()
        with self._lock:
            self._memo[key] = value
            while len(self._memo) > MEMO_KEPT:
                self._memo.popitem(last=False)
        return value

    @staticmethod
    def derived(entry: Entry, what: Hashable, make: Callable[[], T]) -> T:
        """``make()`` once per entry and ``what`` (a rendered section, the JSON); later calls reuse it (as for
        ``across``, one ``what`` is one kind of result)."""
        if what not in entry.derived:
            entry.derived[what] = make()
        return cast(T, entry.derived[what])
