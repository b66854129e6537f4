"""The law page's transfer map: per target, every source's law side by side, their D_T lines at one N, the
crossing points and the "which checkpoint?" ranking (``registry.transfer_map``), drawn by the template block
``_transfer_map.html``. ``?target=python&n=1e5&d_f=3000&unit=tokens`` sets the query of one target's map."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from transfer_laws.plugin.page_data import LawView
from transfer_laws.registry import schema

log = logging.getLogger(__name__)


def _page_loader(client: Any, law: str, mv: Any) -> Any:
    from transfer_laws.plugin.page_fit import load_fit

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


def target_maps(client: Any, views: list[LawView], args: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """One map document per target with a law among ``views`` (``registry.transfer_map.target_map``; only those
    laws, so basic auth's filter holds), the query problems in its notes; a target whose map fails is skipped with a
    log line, never the page."""
    from transfer_laws.registry.transfer_map import read_target, target_map

    runs = {view.law: view.runs for view in views}
    by_target: dict[str, None] = {}
    for view in views:
        try:
            by_target[schema.parse_law(view.law)[1]] = None
        except ValueError:
            continue
    maps = []
    for target in by_target:
        n, d_f, unit, problems = query_of(args or {}, target)
        try:
            laws = read_target(client, target, load=_page_loader, runs=runs, only=set(runs))  # what the user may see
            doc = target_map(laws, n, d_f, unit)
        except Exception:
            log.warning("law page: no transfer map for target %r", target, exc_info=True)
            continue
        doc["notes"] = problems + doc.get("notes", [])
        maps.append(doc)
    return maps


def map_sections(client: Any, views: list[LawView], args: Mapping[str, str]) -> list[dict[str, Any]]:
    """What the template block draws per target: the document and its charts."""
    from transfer_laws.registry.fit._svg_map import lines_chart, params_chart

    return [{"doc": doc, "lines_chart": lines_chart(doc),
             "params_charts": [c for c in (params_chart(doc, "alpha"), params_chart(doc, "beta")) if c]}
            for doc in target_maps(client, views, args)]
