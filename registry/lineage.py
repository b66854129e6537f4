"""Lineage: which runs started from a checkpoint version, and where a run came from.

Fine-tune runs carry ``transfer.parent = models:/name/version`` (written by the facts callback); a checkpoint
version records the pretraining run that produced it; that run's dataset inputs name the data it saw.

The way down is also visible in the registry itself: when a fine-tune starts, the callback calls
``update_checkpoint_lineage``, which rewrites the checkpoint version's tags (``transfer.finetunes``,
``transfer.last_finetune``, ``transfer.lineage``) and its description (the latest runs, linked, and the run filter
that finds them all) from a search, so concurrent fine-tunes cannot leave it stale for long.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from transfer_laws.lightning_modules.config import parse_model_uri
from transfer_laws.registry.reader import read_checkpoint_version, read_run
from transfer_laws.registry.records import CheckpointVersion, StoredRun
from transfer_laws.registry.schema import (
    CKPT_TAG_FINETUNES,
    CKPT_TAG_LAST_FINETUNE,
    CKPT_TAG_LINEAGE,
    MLFLOW_DATA_CONTEXT,
    TAG_PARENT,
    TAG_PRETRAIN_RUN,
    ui_route,
)
from transfer_laws.registry.tracking import all_pages, client_for, get_version

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

DESCRIPTION_RUNS = 25
"""Runs listed in a checkpoint version's description (the newest); the rest are one filter away."""


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


def lineage_filter(uri: str) -> str:
    """The ``search_runs`` filter of every run started from the exact version ``models:/name/<n>``."""
    return f"tags.`{TAG_PARENT}` = '{uri}'"


def resolve_version_uri(client: MlflowClient, uri: str) -> str:
    """``models:/name@alias`` or ``models:/name/<n>`` -> ``models:/name/<n>``; ValueError naming what is missing."""
    from mlflow.exceptions import MlflowException

    name, version, alias = parse_model_uri(uri)
    try:
        if version:
            mv = client.get_model_version(name, version)
        elif alias:
            mv = client.get_model_version_by_alias(name, alias)
        else:
            raise ValueError(f"{uri!r} names neither a version nor an alias")
    except MlflowException as exc:
        raise ValueError(f"{uri} is not in the registry: {exc.message}") from None
    return f"models:/{name}/{int(mv.version)}"


def lineage_of_version(uri: str, tracking_uri: str | None = None, page_size: int = 500) -> list[StoredRun]:
    """Every run, in every experiment, started from checkpoint ``uri`` (a version or an alias), oldest first."""

    client = client_for(tracking_uri)
    return runs_from_version(client, resolve_version_uri(client, uri), page_size)


def runs_from_version(client: MlflowClient, exact_uri: str, page_size: int = 500) -> list[StoredRun]:
    """Every run whose ``transfer.parent`` is ``exact_uri`` (``models:/name/<n>``), oldest first."""
    experiment_ids = [e.experiment_id for e in all_pages(lambda token: client.search_experiments(
        max_results=page_size, page_token=token))]
    if not experiment_ids:
        return []
    runs = all_pages(lambda token: client.search_runs(
        experiment_ids, filter_string=lineage_filter(exact_uri), order_by=["attributes.start_time ASC"],
        max_results=page_size, page_token=token))
    return [read_run(run) for run in runs]


def update_checkpoint_lineage(client: MlflowClient, exact_uri: str) -> list[StoredRun]:
    """Rewrite checkpoint version ``exact_uri``'s lineage tags and description from the runs that started from it.

    Idempotent and rebuilt from a search each time, so two fine-tunes starting at once end with both listed.
    Returns the runs found.
    """
    name, version, _ = parse_model_uri(exact_uri)
    if version is None:
        raise ValueError(f"checkpoint lineage needs an exact version (models:/name/<n>), not {exact_uri!r}")
    runs = runs_from_version(client, exact_uri)
    mv = client.get_model_version(name, version)
    tags = {CKPT_TAG_FINETUNES: str(len(runs)), CKPT_TAG_LINEAGE: lineage_filter(exact_uri)}
    if runs:
        tags[CKPT_TAG_LAST_FINETUNE] = runs[-1].run_id
    for key, value in tags.items():
        if (mv.tags or {}).get(key) != value:
            client.set_model_version_tag(name, version, key, value)
    client.update_model_version(name, version, description=checkpoint_description(read_checkpoint_version(mv), runs))
    return runs


def checkpoint_description(checkpoint: CheckpointVersion, runs: list[StoredRun]) -> str:
    """Markdown for a checkpoint version: what it is, the runs that started from it, where to find them all."""
    exact_uri = checkpoint.uri
    facts = [f"N = {checkpoint.n_params:,} non-embedding parameters" if checkpoint.n_params is not None else "",
             f"pretrained on {checkpoint.corpus}" if checkpoint.corpus else "",
             f"{checkpoint.tokens_seen:,} tokens seen" if checkpoint.tokens_seen is not None else ""]
    lines = [f"Pretrained checkpoint `{exact_uri}`" + (": " + ", ".join(f for f in facts if f) if any(facts) else "")
             + ".", "",
             f"**Lineage.** {len(runs)} run(s) started from this version. Every run that starts from it carries the "
             f"tag `{TAG_PARENT}` = `{exact_uri}`: search runs with `` {lineage_filter(exact_uri)} ``, or run "
             f"`transfer-laws lineage {exact_uri}`. The source run above is the pretraining run that made it."]
    if runs:
        lines += ["", "| run | N | D_F tokens | best test loss |", "|---|---|---|---|"]
        for run in list(reversed(runs))[:DESCRIPTION_RUNS]:
            label = run.name
            route = ui_route(f"#/experiments/{run.experiment_id}/runs/{run.run_id}")
            link = f"[{label}]({route})" if run.experiment_id else label
            loss = f"{run.best_test_loss:.4f}" if run.best_test_loss is not None else "(training)"
            lines.append(f"| {link} | {_count(run.n_params)} | {_count(run.d_f_tokens)} | {loss} |")
        if len(runs) > DESCRIPTION_RUNS:
            lines.append(f"\n... and {len(runs) - DESCRIPTION_RUNS} older run(s): use the search above.")
    return "\n".join(lines)


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def checkpoint_version(client: MlflowClient, uri: str) -> CheckpointVersion:
    """The version ``models:/name/<n>`` or ``models:/name@alias`` names, with its aliases (``CheckpointNotFound``,
    naming the aliases and versions there are, when there is none)."""
    return read_checkpoint_version(get_version(client, uri))


def versions_named(client: MlflowClient, name: str) -> list[CheckpointVersion]:
    """Every version of registered model ``name``, oldest first, with their aliases ([] when it has none)."""
    from mlflow.exceptions import MlflowException

    try:
        found = client.search_model_versions(f"name = '{_quoted(name)}'", max_results=1000)
    except MlflowException:  # a name the search cannot parse names no model
        return []
    return _with_aliases(client, found)


def versions_made_by(client: MlflowClient, run_id: str) -> list[CheckpointVersion]:
    """The versions run ``run_id`` produced (a pretraining run's checkpoints), oldest first, with their aliases."""
    return _with_aliases(client, client.search_model_versions(f"run_id = '{_quoted(run_id)}'", max_results=1000))


def _with_aliases(client: MlflowClient, versions: list[ModelVersion]) -> list[CheckpointVersion]:
    """Versions in order, each fetched again: a search's versions carry no aliases."""
    ordered = sorted(versions, key=lambda v: (v.name, int(v.version)))
    return [read_checkpoint_version(client.get_model_version(v.name, v.version)) for v in ordered]


def _quoted(text: str) -> str:
    return text.replace("'", "\\'")


def lineage_of_run(run_id: str, tracking_uri: str | None = None) -> RunLineage:
    """Walk back from a run: its parent version, the pretraining run behind it and that run's data inputs."""

    client = client_for(tracking_uri)
    run = client.get_run(run_id)
    parent = run.data.tags.get(TAG_PARENT)
    pretrain = run.data.tags.get(TAG_PRETRAIN_RUN)
    if parent and not pretrain:
        name, version, _ = parse_model_uri(parent)
        pretrain = client.get_model_version(name, version).run_id if version else None
    inputs = _data_inputs(client.get_run(pretrain)) if pretrain else []
    return RunLineage(run_id=run_id, parent_uri=parent, pretrain_run_id=pretrain, pretrain_inputs=inputs)


def _data_inputs(run: Run) -> list[DataInput]:
    inputs = []
    for item in run.inputs.dataset_inputs if run.inputs else []:
        tags = {t.key: t.value for t in item.tags}
        inputs.append(DataInput(name=item.dataset.name, digest=item.dataset.digest,
                                context=tags.get(MLFLOW_DATA_CONTEXT)))
    return inputs
