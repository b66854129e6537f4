"""Lineage: which runs started from a checkpoint version, and where a run came from.

Fine-tune runs carry ``transfer.parent = models:/name/version`` (written by the facts callback); a checkpoint
version records the pretraining run that produced it; that run's dataset inputs name the data it saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transfer_laws.registry.schema import METRIC_BEST_TEST_LOSS, PARAM_D_F_TOKENS, TAG_PARENT, TAG_PRETRAIN_RUN


@dataclass(frozen=True)
class LineageRun:
    """A run that started from a checkpoint version."""

    run_id: str
    """MLflow run id."""
    d_f_tokens: int | None
    """Fine-tuning budget D_F in tokens (param ``D_F_tokens``)."""
    best_test_loss: float | None
    """Best held-out loss in nats/token, None if the run recorded none (failed or running)."""
    status: str
    """MLflow run status (FINISHED, FAILED, RUNNING...)."""


@dataclass(frozen=True)
class DataInput:
    """One dataset input of a run."""

    name: str
    """Dataset name (``<corpus>-train`` / ``<corpus>-test``)."""
    digest: str
    """Content digest of the data."""
    context: str | None
    """``pretraining``, ``fine-tuning`` or ``test``."""


@dataclass(frozen=True)
class RunLineage:
    """A run's ancestry: run -> parent checkpoint version -> pretraining run and its data."""

    run_id: str
    """The run asked about."""
    parent_uri: str | None
    """``models:/name/version`` it started from (None for pretraining and scratch runs)."""
    pretrain_run_id: str | None
    """The pretraining run behind that version."""
    pretrain_inputs: list[DataInput] = field(default_factory=list)
    """The data the pretraining run logged as inputs."""


def lineage_of_version(uri: str, tracking_uri: str | None = None, page_size: int = 500) -> list[LineageRun]:
    """Every run, in every experiment, whose ``transfer.parent`` is ``uri`` (``models:/name/version``)."""
    from mlflow import MlflowClient

    from transfer_laws.registry.checkpoints import parse_model_uri

    name, version, _ = parse_model_uri(uri)
    if version is None:
        raise ValueError(f"lineage needs an exact version (models:/name/version), not an alias: {uri!r}")
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_ids = [e.experiment_id for e in _all_pages(lambda token: client.search_experiments(
        max_results=page_size, page_token=token))]
    if not experiment_ids:
        return []
    runs = _all_pages(lambda token: client.search_runs(
        experiment_ids, filter_string=f"tags.`{TAG_PARENT}` = 'models:/{name}/{int(version)}'",
        max_results=page_size, page_token=token))
    return [_lineage_run(run) for run in runs]


def lineage_of_run(run_id: str, tracking_uri: str | None = None) -> RunLineage:
    """Walk back from a run: its parent version, the pretraining run behind it and that run's data inputs."""
    from mlflow import MlflowClient

    from transfer_laws.registry.checkpoints import parse_model_uri

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    run = client.get_run(run_id)
    parent = run.data.tags.get(TAG_PARENT)
    pretrain = run.data.tags.get(TAG_PRETRAIN_RUN)
    if parent and not pretrain:
        name, version, _ = parse_model_uri(parent)
        pretrain = client.get_model_version(name, version).run_id if version else None
    inputs = _data_inputs(client.get_run(pretrain)) if pretrain else []
    return RunLineage(run_id=run_id, parent_uri=parent, pretrain_run_id=pretrain, pretrain_inputs=inputs)


def _all_pages(fetch: Any) -> list[Any]:
    items: list[Any] = []
    token = None
    while True:
        page = fetch(token)
        items.extend(page)
        token = page.token
        if not token:
            return items


def _lineage_run(run: Any) -> LineageRun:
    d_f = run.data.params.get(PARAM_D_F_TOKENS)
    return LineageRun(run_id=run.info.run_id, d_f_tokens=int(d_f) if d_f is not None else None,
                      best_test_loss=run.data.metrics.get(METRIC_BEST_TEST_LOSS), status=run.info.status)


def _data_inputs(run: Any) -> list[DataInput]:
    inputs = []
    for item in run.inputs.dataset_inputs if run.inputs else []:
        tags = {t.key: t.value for t in item.tags}
        inputs.append(DataInput(name=item.dataset.name, digest=item.dataset.digest,
                                context=tags.get("mlflow.data.context")))
    return inputs
