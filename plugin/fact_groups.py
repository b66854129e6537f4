"""The groups of run facts ``TransferFactsCallback`` writes, one MLflow request each: their shapes (also the JSON a
callback saves when the server cannot be reached), how one is written, and ``replay_facts`` for the saved ones."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias, TypedDict

from mlflow.entities import Dataset, DatasetInput, InputTag, LoggedModelInput, Metric, Param, RunTag

from transfer_laws.registry.lineage import update_checkpoint_lineage
from transfer_laws.registry.tracking import client_for

if TYPE_CHECKING:
    from mlflow import MlflowClient

ParamValue: TypeAlias = "str | int | float | bool"
"""A param as a caller gives it (MLflow stores its ``str``)."""


class ParamsGroup(TypedDict):
    kind: Literal["params"]
    values: dict[str, ParamValue]


class TagsGroup(TypedDict):
    kind: Literal["tags"]
    values: dict[str, str]


class MetricsGroup(TypedDict):
    kind: Literal["metrics"]
    values: dict[str, float]
    step: int


class DatasetFields(TypedDict):
    """The arguments of MLflow's ``Dataset`` entity."""

    name: str
    digest: str
    source_type: str
    source: str
    schema: str | None
    profile: str


class DatasetSpec(TypedDict):
    dataset: DatasetFields
    tags: dict[str, str]


class InputsGroup(TypedDict):
    kind: Literal["inputs"]
    datasets: list[DatasetSpec]
    model_id: str | None


class TextGroup(TypedDict):
    kind: Literal["text"]
    path: str
    text: str


class LineageGroup(TypedDict):
    kind: Literal["lineage"]
    parent_uri: str


FactsGroup: TypeAlias = "ParamsGroup | TagsGroup | MetricsGroup | InputsGroup | TextGroup | LineageGroup"


def write_group(client: MlflowClient, run_id: str, group: FactsGroup) -> None:
    """Write one group of facts (or one a callback saved) to a run in one request."""
    if group["kind"] == "params":
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in group["values"].items()])
    elif group["kind"] == "tags":
        client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in group["values"].items()])
    elif group["kind"] == "metrics":
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, group["step"]) for k, v in group["values"].items()])
    elif group["kind"] == "inputs":
        datasets = [
            DatasetInput(Dataset(**d["dataset"]), [InputTag(k, str(v)) for k, v in d["tags"].items()])
            for d in group["datasets"]
        ]
        model_id = group.get("model_id")
        models = [LoggedModelInput(model_id)] if model_id else None
        if datasets or models:
            client.log_inputs(run_id, datasets=datasets or None, models=models)
    elif group["kind"] == "text":
        client.log_text(run_id, group["text"], group["path"])
    elif group["kind"] == "lineage":
        update_checkpoint_lineage(client, group["parent_uri"])
    else:  # a saved file from another version, or edited by hand
        raise ValueError(f"unknown facts group kind {group['kind']!r}")


def replay_facts(path: Path, tracking_uri: str | None = None) -> int:
    """Write the groups a callback saved to ``path`` (when the server was unreachable); returns how many."""
    payload = json.loads(Path(path).read_text())
    uri = tracking_uri or payload.get("tracking_uri")
    client = client_for(uri)
    for group in payload["groups"]:
        write_group(client, payload["run_id"], group)
    return len(payload["groups"])
