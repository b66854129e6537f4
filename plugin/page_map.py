"""The law page's transfer map: per target, every source's law side by side, their D_T lines at one N, the
crossing points and the "which checkpoint?" ranking (``registry.transfer_map``), drawn by the template block
``_transfer_map.html``. ``?target=python&n=1e5&d_f=3000&unit=tokens`` sets the query of one target's map."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeAlias, TypedDict

from transfer_laws.plugin.page_data import LawView
from transfer_laws.plugin.page_fit import load_fit
from transfer_laws.registry import schema
from transfer_laws.registry.fit.charts import lines_chart, params_chart
from transfer_laws.registry.transfer_map import read_target, target_map

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from transfer_laws.registry.fit import TransferLaw

log = logging.getLogger(__name__)


class MapSection(TypedDict):
    """One target's map as the template block draws it: the document (``registry.transfer_map.target_map``) and its
    charts (SVG)."""

    doc: dict[str, object]
    lines_chart: str
    params_charts: list[str]


MapKey: TypeAlias = "tuple[str, str, tuple[tuple[str, str | None], ...], float | None, float | None, str]"
"""(store, target, its laws' (law, version), N, D_F, unit): what one map is drawn from."""


def _page_loader(client: MlflowClient, law: str, mv: ModelVersion) -> TransferLaw:
    if mv.source is None:
        raise LookupError(f"{law} v{mv.version} has no source: no law model to read its fit from")
    return load_fit(client, mv.source)  # the page's per-process cache: each version's fit is read once


def query_of(args: Mapping[str, str], target: str) -> tuple[float | None, float | None, str, list[str]]:
    """(N, D_F, unit, problems) asked for ``target`` in the page's query string; a bad value is ignored and said."""
    if args.get("target") != target:
        return None, None, "tokens", []
    values: dict[str, float | None] = {}
    problems = []
    for key in ("n", "d_f"):
        raw = (args.get(key) or "").strip()
        try:
            value = float(raw) if raw else None
        except ValueError:
            value = None
        if raw and (value is None or not math.isfinite(value) or value <= 0):
            problems.append(f"{key}={raw!r} is not a positive number; the default is shown")
            value = None
        values[key] = value
    unit = args.get("unit", "tokens")
    if unit not in ("tokens", "chars"):
        problems.append(f"unit={unit!r} is not tokens or chars; tokens are shown")
        unit = "tokens"
    return values["n"], values["d_f"], unit, problems


MAP_TTL_S = 60.0
"""A target's map (document and charts) is reused this long for the same law versions and query (a newly
registered checkpoint shows up within it)."""
_CACHE_SIZE = 64
_cache: OrderedDict[MapKey, tuple[float, MapSection]] = OrderedDict()
_cache_lock = threading.Lock()


def _cached(key: MapKey, build: Callable[[], MapSection]) -> MapSection:
    """The section under ``key`` (never mutated by its readers), built when missing or older than ``MAP_TTL_S``."""
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] > now:
            _cache.move_to_end(key)
            return hit[1]
    section = build()
    with _cache_lock:
        _cache[key] = (now + MAP_TTL_S, section)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return section


def _section(doc: dict[str, object]) -> MapSection:
    """The document and its charts, as the template block draws them."""
    return {"doc": doc, "lines_chart": lines_chart(doc),
            "params_charts": [c for c in (params_chart(doc, "alpha"), params_chart(doc, "beta")) if c]}


def map_sections(client: MlflowClient, views: list[LawView], args: Mapping[str, str] | None = None,
                 targets: set[str] | None = None) -> list[MapSection]:
    """One map per target with a law among ``views`` (``registry.transfer_map.target_map``; only those laws, so
    basic auth's filter holds), ``targets`` at most (those of the laws a page shows: a page of 20 laws draws at most
    20 maps, however many laws there are), with its charts and the query's problems in its notes; a target whose map
    fails is skipped with a log line, never the page. A map is reused for ``MAP_TTL_S`` while its laws' versions
    and the query hold."""
    runs = {view.law: view.runs for view in views}
    by_target: dict[str, list[tuple[str, str | None]]] = {}
    for view in views:
        try:
            target = schema.parse_law(view.law)[1]
        except ValueError:
            continue
        if targets is None or target in targets:
            by_target.setdefault(target, []).append((view.law, view.version))
    sections: list[MapSection] = []
    for target, versions in by_target.items():
        n, d_f, unit, problems = query_of(args or {}, target)
        key = (str(getattr(client, "tracking_uri", "")), target, tuple(sorted(versions, key=str)), n, d_f, unit)

        def build(target: str = target, n: float | None = n, d_f: float | None = d_f,
                  unit: str = unit) -> MapSection:
            laws = read_target(client, target, load=_page_loader, runs=runs, only=set(runs))  # what the user may see
            return _section(target_map(laws, n, d_f, unit))

        try:
            section = _cached(key, build)
        except Exception:
            log.warning("law page: no transfer map for target %r", target, exc_info=True)
            continue
        notes = section["doc"].get("notes", [])
        if not isinstance(notes, list):
            raise TypeError(f"the transfer map of {target!r} has notes that are not a list: {notes!r}")
        sections.append({**section, "doc": {**section["doc"], "notes": problems + notes}})
    return sections


def target_maps(client: MlflowClient, views: list[LawView], args: Mapping[str, str] | None = None,
                targets: set[str] | None = None) -> list[dict[str, object]]:
    """The map documents of ``map_sections`` (``/api/laws``'s ``targets``)."""
    return [section["doc"] for section in map_sections(client, views, args, targets)]
