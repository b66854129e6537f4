"""A target's transfer map in MLflow itself: one run of the refit experiment per target (``transfer-map-<target>``,
tag ``transfer.map_target``) holds ``map/map.json`` and the charts comparing the target's sources, and logs each
source's alpha, beta and k as metrics. The refit updates it whenever a law of the target gets a version with
plots (the last writer's picture stands; each writer draws every law's ``@latest``).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from transfer_laws.registry.fit import TransferLaw
from transfer_laws.registry.fit.charts import lines_chart, params_chart
from transfer_laws.registry.locks import registry_lock
from transfer_laws.registry.schema import (
    LAW_PAGE_PATH,
    LAW_TAG_TARGET,
    MAP_ARTIFACT,
    MLFLOW_NOTE,
    REFIT_EXPERIMENT,
    TAG_MAP_TARGET,
)
from transfer_laws.registry.tracking import ensure_experiment
from transfer_laws.registry.transfer_map import Loader, MapDoc, fit_loader, read_target, target_map

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion


def _map_run(client: MlflowClient, experiment_id: str, target: str) -> str:
    """The target's map run, created (and ended) on first use, under a registry-side lock: refits of two laws of
    one target (on two replicas, or the server and CI) would otherwise both create one."""
    def find() -> str | None:
        found = client.search_runs([experiment_id], filter_string=f"tags.`{TAG_MAP_TARGET}` = '{target}'",
                                   order_by=["attributes.start_time ASC"], max_results=1)
        return found[0].info.run_id if found else None

    existing = find()
    if existing:
        return existing
    with registry_lock(client, f"map-{target}"):
        existing = find()
        if existing:
            return existing
        run = client.create_run(experiment_id, run_name=f"transfer-map-{target}",
                                tags={TAG_MAP_TARGET: target, LAW_TAG_TARGET: target})
        client.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id


def _metrics(doc: MapDoc) -> dict[str, float]:
    out = {}
    for law in doc["laws"]:
        for name in ("alpha", "beta", "k_tokens", "k_chars"):
            est = law.get(name) or {}
            for suffix, key in (("", "value"), ("_low", "low"), ("_high", "high")):
                value = est.get(key)
                if isinstance(value, float):  # the document holds None where a number is not finite
                    out[f"{law['source']}.{name}{suffix}"] = value
    return out


def _note(doc: MapDoc) -> str:
    target = doc["target"]
    rows = [f"| {law['source']} | v{law['version']} | {law['alpha']['value']:.3g} | {law['beta']['value']:.3g} | "
            f"{'yes' if law['determined'] else 'no: ' + law['why']} |" for law in doc["laws"] if law.get("alpha")]
    return "\n".join([
        f"**Transfer map of target `{target}`**: every law `<source>-to-{target}` side by side, updated when one of "
        f"them gets a version. `{MAP_ARTIFACT}/d_t_by_source.svg` draws each source's D_T against D_F at "
        f"N = {doc['n']:.3g} with 95% bands; `alpha_by_source.svg` and `beta_by_source.svg` compare the exponents; "
        f"`map.json` holds the numbers, crossings and the checkpoint ranking. Metrics: `<source>.alpha` etc.", "",
        "| source | version | alpha | beta | determined |", "|---|---|---|---|---|", *rows, "",
        f"Interactive, with \"which checkpoint?\": the [law page]({LAW_PAGE_PATH}#map-{target}) "
        f"(`transfer-laws choose --target {target} --n N --d-f D`).",
    ])


def log_target_map(client: MlflowClient, tracking_uri: str, target: str, load: Loader | None = None,
                   known: dict[tuple[str, str], TransferLaw] | None = None) -> str | None:
    """Write ``target``'s map to its run in the refit experiment; returns the run id (None: the target has no law
    with a fit yet). ``known``: fits at hand, ``{(law, version): fit}`` (the refit's own), not downloaded again."""
    from mlflow.entities import Metric

    download = load or fit_loader(tracking_uri)

    def load_known(c: MlflowClient, law: str, mv: ModelVersion) -> TransferLaw:
        fit = (known or {}).get((law, str(mv.version)))
        return fit if fit is not None else download(c, law, mv)

    laws = read_target(client, target, load=load_known)
    doc = target_map(laws) if laws else None
    if doc is None or not any(law.get("alpha") for law in doc["laws"]):
        return None
    run_id = _map_run(client, ensure_experiment(REFIT_EXPERIMENT, tracking_uri=tracking_uri), target)
    charts = {"d_t_by_source.svg": lines_chart(doc, standalone=True),
              "alpha_by_source.svg": params_chart(doc, "alpha", standalone=True),
              "beta_by_source.svg": params_chart(doc, "beta", standalone=True)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / MAP_ARTIFACT
        folder.mkdir()
        (folder / "map.json").write_text(json.dumps(doc, indent=1, default=str))
        for name, svg in charts.items():
            if svg:
                (folder / name).write_text(svg)
        client.log_artifacts(run_id, str(folder), MAP_ARTIFACT)
    step = sum(int(law["version"]) for law in doc["laws"] if str(law.get("version") or "").isdigit())
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in _metrics(doc).items()])
    client.set_tag(run_id, MLFLOW_NOTE, _note(doc))
    return run_id
