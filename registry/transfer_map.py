"""The transfer map of a target: every law ``<source>-to-<target>`` side by side, and "which checkpoint?".

MLflow reading only: the target's law models (``@latest`` of each ``transfer-law-*-to-<target>``), their fine-tunes
(for characters per token) and the registered checkpoints of each source; the comparison itself is numpy in
``registry/fit/compare.py``. ``target_map`` returns one JSON-ready document that the law page, ``/api/laws``,
``report --target`` and ``choose`` all show.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from transfer_laws.registry.fit import TransferLaw
from transfer_laws.registry.fit.compare import (
    Ranked,
    Source,
    chars_per_token,
    contrast,
    crossing,
    d_t_line,
    fitted_span,
    law_row,
    rank,
    scale,
)
from transfer_laws.registry.reader import read_checkpoint_version, read_law_inputs
from transfer_laws.registry.records import RunResult
from transfer_laws.registry.schema import (
    DEFAULT_CHECKPOINT_ALIAS,
    LAW_ALIAS,
    LAW_FIT_IN_MODEL,
    LAW_MODEL_PREFIX,
    checkpoint_model_name,
    law_name,
    parse_law,
)
from transfer_laws.registry.tracking import all_pages

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

MapDoc: TypeAlias = dict[str, Any]
"""A map as a JSON document (``target_map``): JSON's values, read by the page, the map run and the CLI."""
N_MATCH = 0.02
"""A checkpoint serves a query at N when its N is within 2% of it (N is an exact count; 2% is a shape's rounding)."""


@dataclass(frozen=True)
class Checkpoint:
    """A registered checkpoint version of a source."""

    name: str
    version: int
    n: float | None
    """Its non-embedding parameters (version tag ``N``)."""
    aliases: tuple[str, ...]

    @property
    def uri(self) -> str:
        """The URI to fine-tune from: ``@champion`` when it holds that alias, else another alias, else the number."""
        if DEFAULT_CHECKPOINT_ALIAS in self.aliases:
            return f"models:/{self.name}@{DEFAULT_CHECKPOINT_ALIAS}"
        return f"models:/{self.name}@{self.aliases[0]}" if self.aliases else f"models:/{self.name}/{self.version}"


@dataclass
class TargetLaw:
    """One law of the target as MLflow holds it."""

    law: str
    source: str
    version: str | None
    fit: TransferLaw | None
    """The ``TransferLaw`` of the shown version (None, with ``error``, when it has none or it cannot be read)."""
    error: str | None = None
    runs: list[RunResult] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)


Loader: TypeAlias = "Callable[[MlflowClient, str, ModelVersion], TransferLaw]"
"""(client, law, model version) -> the version's ``TransferLaw``."""


def fit_loader(tracking_uri: str | None = None) -> Loader:
    """A loader that downloads a version's fit folder from the store at ``tracking_uri`` (default: the active one):
    the ``artifacts/fit`` folder of its logged model, else the whole registered version searched for it."""

    def load(client: MlflowClient, law: str, mv: ModelVersion) -> TransferLaw:
        from mlflow.artifacts import download_artifacts

        with tempfile.TemporaryDirectory() as tmp:
            source = mv.source or ""
            if source.startswith("models:/m-"):
                root = client.get_logged_model(source.removeprefix("models:/")).artifact_location
                uri = f"{root.rstrip('/')}/{LAW_FIT_IN_MODEL}"
            else:
                uri = f"models:/{mv.name}/{mv.version}"
            local = Path(download_artifacts(artifact_uri=uri, dst_path=tmp, tracking_uri=tracking_uri))
            folders = sorted({p.parent for p in local.rglob("*.json") if TransferLaw.is_fit_folder(p.parent)})
            if not folders:
                raise LookupError(f"{law} v{mv.version}: its law model holds no fit folder")
            return TransferLaw.load(folders[0])

    return load


def _laws_named(client: MlflowClient, pattern: str) -> list[str]:
    """Well-formed laws whose model name matches the LIKE ``pattern`` (a crafted name never comes back)."""
    laws: list[str] = []
    for model in all_pages(lambda token: client.search_registered_models(
            filter_string=f"name LIKE '{pattern}'", max_results=1000, page_token=token)):
        law = model.name.removeprefix(LAW_MODEL_PREFIX)
        try:
            if law_name(*parse_law(law)) == law:
                laws.append(law)
        except ValueError:
            continue
    return sorted(laws)


def target_laws(client: MlflowClient, target: str) -> list[str]:
    """Every law of ``target`` with a registered law model, sorted."""
    law_name("x", target)  # a malformed target is a ValueError before it reaches a filter
    return [law for law in _laws_named(client, f"{LAW_MODEL_PREFIX}%-to-{target}") if parse_law(law)[1] == target]


def targets(client: MlflowClient) -> list[str]:
    """Every target that has at least one registered law."""
    return sorted({parse_law(law)[1] for law in _laws_named(client, f"{LAW_MODEL_PREFIX}%")})


def _shown_version(client: MlflowClient, law: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    name = f"{LAW_MODEL_PREFIX}{law}"
    try:
        return client.get_model_version_by_alias(name, LAW_ALIAS)
    except MlflowException:
        versions = client.search_model_versions(f"name = '{name}'")
        return max(versions, key=lambda v: int(v.version)) if versions else None


def checkpoints_of(client: MlflowClient, source: str, runs: list[RunResult],
                   aliases_of: dict[str, dict[str, str]] | None = None) -> list[Checkpoint]:
    """The registered checkpoints of ``source``: every version of ``pretrained-<source>`` and every parent the law's
    fine-tunes started from (the lineage the plugin recorded)."""
    from mlflow.exceptions import MlflowException

    versions = {(mv.name, int(mv.version)): mv
                for mv in client.search_model_versions(f"name = '{checkpoint_model_name(source)}'")}
    for parent in sorted({r.parent for r in runs if r.parent and r.parent.startswith("models:/")}):
        name, _, number = parent.removeprefix("models:/").rpartition("/")
        if number.isdigit() and (name, int(number)) not in versions:
            try:
                versions[(name, int(number))] = client.get_model_version(name, number)
            except MlflowException:
                continue
    aliases: dict[tuple[str, int], list[str]] = {}
    known = {} if aliases_of is None else aliases_of  # laws of one target share parents: read each model once
    for name in {name for name, _ in versions}:  # a search's versions carry no aliases; the model holds them
        if name not in known:
            known[name] = dict(client.get_registered_model(name).aliases or {})
        for alias, number in known[name].items():
            aliases.setdefault((name, int(number)), []).append(alias)
    out = []
    for key, mv in sorted(versions.items()):
        n = read_checkpoint_version(mv).n_params
        out.append(Checkpoint(*key, None if n is None else float(n), tuple(sorted(aliases.get(key, [])))))
    return out


def read_target(client: MlflowClient, target: str, *, load: Loader | None = None,
                runs: dict[str, list[RunResult]] | None = None, only: set[str] | None = None) -> list[TargetLaw]:
    """Each law of ``target``: its shown version's fit, its runs (``runs`` when the caller has them, else the
    reader's) and its source's checkpoints. A law whose fit cannot be read stays in the list with the reason.
    ``load`` reads a version's fit (default: ``fit_loader()`` on the active store); ``only``: these laws at most
    (the ones a page's user may read)."""
    load = load or fit_loader()
    aliases_of: dict[str, dict[str, str]] = {}
    out = []
    for law in target_laws(client, target):
        if only is not None and law not in only:
            continue
        source = parse_law(law)[0]
        mv = _shown_version(client, law)
        law_runs = runs[law] if runs is not None and law in runs else read_law_inputs(law, client).points
        entry = TargetLaw(law, source, str(mv.version) if mv is not None else None, None, runs=law_runs)
        if mv is None:
            entry.error = "no version yet"
        else:
            try:
                entry.fit = load(client, law, mv)
            except Exception as exc:  # an old or broken version: the map shows the others and says why
                entry.error = f"its fit could not be read ({type(exc).__name__}: {exc})"
        entry.checkpoints = checkpoints_of(client, source, law_runs, aliases_of)
        out.append(entry)
    return out


def checkpoint_for(checkpoints: list[Checkpoint], n: float) -> tuple[Checkpoint | None, str]:
    """The checkpoint to fine-tune at N (the newest version whose N is within 2%), or None and what there is."""
    sized = [c for c in checkpoints if c.n]
    match = [c for c in sized if abs(math.log(c.n / n)) <= math.log1p(N_MATCH)]  # type: ignore[operator]
    if match:
        return max(match, key=lambda c: c.version), ""
    if not sized:
        return None, "no registered checkpoint of this source"
    near = min(sized, key=lambda c: abs(math.log(c.n / n)))  # type: ignore[operator]
    return None, f"no registered checkpoint at N={n:.3g}; the nearest is {near.uri} (N={near.n:.3g})"


def _defaults(sources: list[Source], unit: str) -> tuple[float, float]:
    """The query a map opens at: the largest N every law was fitted at (else the largest any was), and the smallest
    D_F every law reaches (the paper's question is small D_F), in ``unit``."""
    used = [{p.n for p in s.fit.points if p.used} for s in sources]
    common = set.intersection(*used) if used else set()
    ns = common or set().union(*used)
    lows = [fitted_span(s.fit)["D_F"][0] * scale(s, unit) for s in sources if fitted_span(s.fit)]
    return (max(ns) if ns else 1.0), (max(lows) if lows else 1.0)


def target_map(laws: list[TargetLaw], n: float | None = None, d_f: float | None = None,
               unit: str = "tokens") -> MapDoc:
    """The map as one JSON-ready document: a row per source (k per token and per character, alpha, beta, runs,
    verdict), D_T lines at N with bands, each pair's crossing point, and the ranking at (N, D_F) naming the
    checkpoint to fine-tune from."""

    target = parse_law(laws[0].law)[1] if laws else None
    sources = [Source(entry.source, entry.fit, chars_per_token(entry.runs)) for entry in laws if entry.fit is not None]
    notes = []
    try:
        default_n, default_d_f = _defaults(sources, unit)
    except ValueError as exc:  # a law whose runs logged no characters, asked in characters: answer in tokens
        notes.append(f"{exc}; shown in tokens")
        unit, d_f = "tokens", None
        default_n, default_d_f = _defaults(sources, unit)
    at_n, at_d_f = n or default_n, d_f or default_d_f  # the query: what the rows below are at
    if sources:
        n, d_f = at_n, at_d_f
    doc: MapDoc = {"target": target, "unit": unit, "n": n, "d_f": d_f, "notes": notes,
                           "convention": "N: non-embedding parameters; D_F and D_T in " + unit + "; k per token and "
                           "per character: k_tokens = k_chars * (chars/token)^(alpha - 1); 95% intervals from the "
                           "laws' draws (parameter uncertainty, not a single run's noise)"}
    doc["laws"] = [{"law": e.law, "source": e.source, "version": e.version, "error": e.error,
                    "checkpoints": [{"uri": c.uri, "name": c.name, "version": c.version, "n": c.n,
                                     "aliases": list(c.aliases)} for c in e.checkpoints],
                    **(law_row(next(s for s in sources if s.source == e.source)) if e.fit is not None else {})}
                   for e in laws]
    ratios = [s.chars_per_token for s in sources if s.chars_per_token]
    if unit == "tokens" and len(ratios) >= 2 and max(ratios) / min(ratios) > 1.02:
        doc["notes"].append("the laws' fine-tunes count different characters per token (different tokenizers?): "
                            "tokens and losses per token are not comparable across them; compare in characters")
    spans = [(lo * scale(s, unit), hi * scale(s, unit)) for s in sources if fitted_span(s.fit)
             for lo, hi in [fitted_span(s.fit)["D_F"]]]
    if not spans:
        return plain(doc)
    grid = np.geomspace(min(lo for lo, _ in spans) / 2, max(hi for _, hi in spans) * 2, 60)
    doc["lines"] = {s.source: d_t_line(s, at_n, grid, unit) for s in sources}
    doc["crossings"] = [crossing(a, b, at_n, unit) for a, b in combinations(sources, 2)]
    ranked, notes = rank(sources, at_n, at_d_f, unit)
    doc["ranked_by"], doc["notes"] = notes[0], doc["notes"] + notes[1:]
    checkpoints = {e.source: e.checkpoints for e in laws}
    doc["ranking"] = [_ranked_row(r, *checkpoint_for(checkpoints[r.source], at_n)) for r in ranked]
    return plain(doc)


def plain(value: object) -> Any:
    """``value`` as strict JSON's types: numpy scalars and tuples made plain, NaN and infinities None."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _ranked_row(r: Ranked, checkpoint: Checkpoint | None, missing: str) -> MapDoc:
    return {"source": r.source, "determined": r.determined, "why": r.why, "d_t": r.d_t.as_dict(),
            "d_e": r.d_e.as_dict(), "multiplier": r.multiplier.as_dict(), "loss": r.loss.as_dict(),
            "extrapolation": r.extrapolation, "vs_next": r.vs_next,
            "checkpoint": checkpoint.uri if checkpoint else None, "checkpoint_note": missing}


def source_contrast(laws: list[TargetLaw], base: str, other: str, n: float | None = None,
                    unit: str = "chars") -> MapDoc:
    """The paper's comparison of two sources of one target (``contrast``) at N (default: the map's) and the
    smallest D_F both laws were fitted at (characters by default, the paper's unit)."""
    found = {e.source: Source(e.source, e.fit, chars_per_token(e.runs)) for e in laws if e.fit is not None}
    missing = [s for s in (base, other) if s not in found]
    if missing:
        raise LookupError(f"no fitted law from source {', '.join(missing)} (laws with a fit: "
                          f"{', '.join(sorted(found)) or 'none'})")
    a, b = found[base], found[other]
    default_n, d_f_small = _defaults([a, b], unit)
    return plain(contrast(a, b, n or default_n, d_f_small, unit))
