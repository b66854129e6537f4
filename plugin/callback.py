"""TransferFactsCallback: writes a run's facts (N, D_F, settings, tags, data and model inputs, best loss) to MLflow.

It works with Lightning's ``MLFlowLogger`` (the run id comes from ``trainer.loggers``) and with a fluent run
(``mlflow.start_run`` / ``mlflow.pytorch.autolog``: ``mlflow.active_run()``). Each group of facts is one
``log_batch`` (or one ``log_inputs``) call, never a request per step. A write that fails is retried a few times;
what still cannot be written is kept and, at the end, saved as JSON next to the checkpoint
(``replay_facts`` below writes it later), so an unreachable server loses nothing.

Under DDP or FSDP only global rank 0 writes: it resolves (and so creates) the run in ``setup``, once the processes
have met, and broadcasts its id, so every rank's ``run_id`` names the one run of the job.

A fine-tune also refreshes its parent checkpoint version's lineage (tags and description listing the runs that
started from it, ``registry.lineage.update_checkpoint_lineage``), so the registry page shows where the checkpoint
went as soon as the fine-tune starts.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias, TypedDict

import lightning as L
import mlflow
from lightning.pytorch.loggers import MLFlowLogger
from mlflow.entities import Dataset, DatasetInput, InputTag, LoggedModelInput, Metric, Param, RunTag

from transfer_laws.plugin.facts import RunFacts
from transfer_laws.plugin.run_config import Plain, chunks, config_params, config_yaml
from transfer_laws.registry.lineage import update_checkpoint_lineage
from transfer_laws.registry.schema import (
    CHECKPOINT_MODEL_PREFIX,
    CONFIG_ARTIFACT,
    CONTEXT_FINETUNING,
    CONTEXT_PRETRAINING,
    CONTEXT_TEST,
    CONTEXT_TRAINING,
    LAW_MODEL_PREFIX,
    METRIC_BEST_STEP,
    METRIC_BEST_TEST_LOSS,
    METRIC_N,
    MLFLOW_DATA_CONTEXT,
    MLFLOW_NOTE,
    PARAM_CONTEXT,
    PARAM_D_PRETRAIN_CHARS,
    PARAM_D_PRETRAIN_TOKENS,
    PARAM_N,
    PARAM_N_EMBD,
    PARAM_N_HEAD,
    PARAM_N_LAYER,
    PARAM_N_TOTAL,
    PARAM_PRETRAIN_CORPUS_CHARS,
    PARAM_PRETRAIN_CORPUS_TOKENS,
    PARAM_TRAIN_SPLIT_TOKENS,
    PARAM_VOCAB,
    ROLE_FINETUNE,
    ROLE_PRETRAIN,
    ROLE_SCRATCH,
    TAG_FAILURE,
    TAG_INPUT_TOKENS,
    TAG_LAW,
    TAG_TOKENIZER,
    data_params,
    law_name,
)
from transfer_laws.registry.tracking import all_pages, client_for, home_dir

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import RegisteredModel
    from mlflow.store.entities.paged_list import PagedList

FACTS_FILE = "unwritten-run-facts.json"

# The groups of facts the callback writes, one MLflow request each: their shapes (also the JSON saved when the
# server cannot be reached), how one is written, and ``replay_facts`` for the saved ones.

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



class TransferFactsCallback(L.Callback):
    """Writes the run's facts at fit start and its best test loss (or failure reason) at the end.

    ``N`` is non-embedding parameters (``TransferLM.n_params``, see ``non_embedding_params``); the DataModule's exact
    training-set token and character counts go under the role's names (``schema.data_params``: ``D_F_tokens`` on
    fine-tunes only). ``config`` is the run's resolved settings (``run_config.resolved_config``): each scalar
    becomes a param ``<group>.<field>`` and the whole is the ``config.yaml`` artifact.
    """

    def __init__(self, facts: RunFacts, *, config: dict[str, Plain] | None = None,
                 params: dict[str, ParamValue] | None = None, run_id: str | None = None,
                 tracking_uri: str | None = None, fallback_dir: Path | None = None, attempts: int = 3,
                 retry_wait_s: float = 0.5) -> None:
        """``params``: a caller's params beside the facts (a sweep's ``lr``), written with them;
        ``run_id``/``tracking_uri`` override discovery; ``fallback_dir`` is where unwritten facts go
        (default: ``<TRANSFER_LAWS_HOME>/checkpoints/<run_id>``, the folder the launcher saves the checkpoint to)."""
        super().__init__()
        self.facts = facts
        self.config = config
        self.params = dict(params or {})
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self.fallback_dir = fallback_dir
        self.attempts = max(1, attempts)
        self.retry_wait_s = retry_wait_s
        self.unwritten: list[FactsGroup] = []
        self.facts_file: Path | None = None
        self._client: MlflowClient | None = None

    # -- Lightning hooks ----------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """The run of the job: resolved on global rank 0 (which creates it) and broadcast to every rank."""
        if trainer.is_global_zero:
            self._resolve_run(trainer)
        if trainer.world_size > 1:
            self.run_id, self.tracking_uri = trainer.strategy.broadcast((self.run_id, self.tracking_uri), src=0)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self._resolve_run(trainer)
        if self.run_id is None:
            warnings.warn("TransferFactsCallback: no MLflow run (no MLFlowLogger, no active run); facts not logged",
                          stacklevel=2)
            return
        datamodule = getattr(trainer, "datamodule", None)
        params: dict[str, ParamValue] = {**_params(pl_module, datamodule, self.facts.role), **_trainer_params(trainer),
                                         **self.params}
        if self.config:
            params.update({k: v for k, v in config_params(self.config).items() if k not in params})
        for chunk in chunks(params):
            self._write({"kind": "params", "values": chunk})
        if PARAM_N in params:  # also as a metric: MLflow sorts metrics as numbers (the saved view sorts by it)
            self._write({"kind": "metrics", "values": {METRIC_N: float(params[PARAM_N])}, "step": 0})
        if self.config:
            self._write({"kind": "text", "path": CONFIG_ARTIFACT, "text": config_yaml(self.config)})
        tags = self.facts.tags()
        digest = getattr(datamodule, "tokenizer_digest", None)
        if digest:
            tags[TAG_TOKENIZER] = str(digest)
        if self.facts.for_laws and self.facts.role == ROLE_SCRATCH and self.facts.target and TAG_LAW not in tags:
            laws = self._target_laws(self.facts.target)
            if laws:
                tags[TAG_LAW] = ",".join(laws)
        tags.setdefault(MLFLOW_NOTE, run_description(self.facts, params, tags.get(TAG_LAW)))
        self._write({"kind": "tags", "values": tags})
        self._write({"kind": "inputs", "datasets": _dataset_inputs(self.facts, datamodule),
                     "model_id": self.facts.parent_model_id})
        if self.facts.for_laws and self.facts.role == ROLE_FINETUNE and self.facts.parent_uri:
            self._write({"kind": "lineage", "parent_uri": self.facts.parent_uri})

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.run_id is None or not trainer.is_global_zero:
            return
        best = float(getattr(pl_module, "best_test_loss", math.inf))
        if math.isfinite(best):
            metrics = {METRIC_BEST_TEST_LOSS: best, METRIC_BEST_STEP: float(getattr(pl_module, "best_step", -1))}
            self._write({"kind": "metrics", "values": metrics, "step": int(trainer.global_step)})
        if self.facts.for_laws and self.facts.role == ROLE_FINETUNE and self.facts.parent_uri:  # its run list: loss
            self._write({"kind": "lineage", "parent_uri": self.facts.parent_uri})
        tokens_seen = getattr(pl_module, "tokens_seen", 0)
        if self.facts.role == ROLE_PRETRAIN and tokens_seen:
            seen = seen_data_params(int(tokens_seen), getattr(trainer, "datamodule", None))
            self._write({"kind": "params", "values": dict(seen)})
        self._save_unwritten()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self.run_id is None or not trainer.is_global_zero:
            return
        reason = f"{type(exception).__name__}: {exception}"[:5000]
        self._write({"kind": "tags", "values": {TAG_FAILURE: reason}})
        self._save_unwritten()

    # -- writing ------------------------------------------------------------------------------------------------
    def _resolve_run(self, trainer: L.Trainer) -> None:
        if self.run_id is None:
            for logger in trainer.loggers:
                if isinstance(logger, MLFlowLogger):
                    self.run_id = logger.run_id
                    self.tracking_uri = self.tracking_uri or logger._tracking_uri  # its store
                    break
        if self.run_id is None:
            active = mlflow.active_run()
            if active is not None:
                self.run_id = active.info.run_id

    def _write(self, group: FactsGroup) -> bool:
        """One request for the group, retried; False (and kept in ``unwritten``) if it never got through."""
        run_id = self.run_id
        if run_id is None:  # every hook returns before writing when it found no run
            raise RuntimeError("TransferFactsCallback: no MLflow run to write run facts to")
        error: Exception | None = None
        for attempt in range(self.attempts):
            try:
                write_group(self._mlflow_client(), run_id, group)
                return True
            except Exception as exc:  # any failure to reach the store is retried, then kept
                error = exc
                if attempt + 1 < self.attempts:
                    time.sleep(self.retry_wait_s * (attempt + 1))
        warnings.warn(f"could not write run facts ({group['kind']}) to MLflow: {error}; keeping them", stacklevel=2)
        self.unwritten.append(group)
        return False

    def _target_laws(self, target: str) -> list[str]:
        """The laws a scratch run on ``target`` serves, as far as the registry knows them now (best effort)."""
        try:
            return target_laws(self._mlflow_client(), target)
        except Exception as exc:  # a registry hiccup must not cost the run its facts
            warnings.warn(f"could not list the laws of target {target!r}: {exc}", stacklevel=2)
            return []

    def _mlflow_client(self) -> MlflowClient:
        if self._client is None:
            self._client = client_for(self.tracking_uri)
        return self._client

    def _save_unwritten(self) -> None:
        if not self.unwritten:
            return
        if self.fallback_dir is not None:
            folder = Path(self.fallback_dir)
        else:
            folder = home_dir() / "checkpoints" / str(self.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / FACTS_FILE
        payload = {"run_id": self.run_id, "tracking_uri": self.tracking_uri, "groups": self.unwritten}
        path.write_text(json.dumps(payload, indent=2, sort_keys=True))
        self.facts_file = path
        warnings.warn(f"MLflow unreachable: {len(self.unwritten)} group(s) of run facts saved to {path}; "
                      "write them later with transfer_laws.plugin.replay_facts", stacklevel=2)


def run_description(facts: RunFacts, params: Mapping[str, ParamValue], laws: str | None) -> str:
    """The run's description on its MLflow page: what it trained, on what, and what it is for."""
    tokens = params.get(data_params(facts.role)[0])
    n = params.get(PARAM_N)
    size = f"N = {int(n):,} non-embedding parameters" if n is not None else "N unknown"
    data = f"{int(tokens):,} tokens" if tokens is not None else "its data"
    if facts.role == ROLE_FINETUNE:
        return (f"Fine-tune of `{facts.parent_uri}` on {data} of `{facts.target}` (D_F), {size}: one point of the "
                f"law `{facts.law}`. Every setting is under Parameters and in `config.yaml`.")
    if facts.role == ROLE_SCRATCH:
        serves = f" for the laws `{laws}`" if laws else f" for every law with target `{facts.target}`"
        return (f"Trained from scratch on {data} of `{facts.target}` (D), {size}: a point on the scratch curve that "
                f"gives D_E{serves}. Every setting is under Parameters and in `config.yaml`.")
    return (f"Pretraining on {data} of `{facts.source}`, {size}; its best checkpoint is registered for fine-tunes "
            "to start from. Every setting is under Parameters and in `config.yaml`.")


def target_laws(client: MlflowClient, target: str) -> list[str]:
    """Laws ``<source>-to-<target>`` the registry knows: a law model of the target, or a ``pretrained-<source>``
    checkpoint model (the name ``pretrain`` registers under), sorted."""
    laws: set[str] = set()
    for prefix in (LAW_MODEL_PREFIX, CHECKPOINT_MODEL_PREFIX):
        for model in all_pages(partial(_models_named, client, prefix)):
            rest = model.name.removeprefix(prefix)
            try:
                law = rest if prefix == LAW_MODEL_PREFIX else law_name(rest, target)
            except ValueError:
                continue
            if law.endswith(f"-to-{target}"):
                laws.add(law)
    return sorted(laws)


def _models_named(client: MlflowClient, prefix: str, token: str | None) -> PagedList[RegisteredModel]:
    """One page of the registered models whose name starts with ``prefix``."""
    return client.search_registered_models(filter_string=f"name LIKE '{prefix}%'", max_results=1000, page_token=token)


def _params(pl_module: L.LightningModule, datamodule: object, role: str) -> dict[str, int]:
    params: dict[str, int] = {}
    for name, attr in ((PARAM_N, "n_params"), (PARAM_N_TOTAL, "n_params_total")):
        if hasattr(pl_module, attr):
            params[name] = int(getattr(pl_module, attr))
    config = getattr(getattr(pl_module, "model", None), "config", None)
    if config is not None:
        for name, attr in ((PARAM_N_LAYER, "n_layer"), (PARAM_N_HEAD, "n_head"), (PARAM_N_EMBD, "n_embd"),
                           (PARAM_CONTEXT, "context_length"), (PARAM_VOCAB, "vocab_size")):
            params[name] = int(getattr(config, attr))
    # A pretraining run's data is what it saw, known when it ends (on_train_end); here, the corpus it draws from.
    tokens_param, chars_param = ((PARAM_PRETRAIN_CORPUS_TOKENS, PARAM_PRETRAIN_CORPUS_CHARS) if role == ROLE_PRETRAIN
                                 else data_params(role))
    sizes = [(tokens_param, "train_tokens"), (chars_param, "train_chars")]
    if role != ROLE_PRETRAIN:  # a pretraining run's corpus size is pretrain_corpus_tokens
        sizes.append((PARAM_TRAIN_SPLIT_TOKENS, "split_tokens"))
    for name, attr in sizes:
        if getattr(datamodule, attr, None) is not None:
            params[name] = int(getattr(datamodule, attr))
    return params


def seen_data_params(seen: int, datamodule: object) -> dict[str, int]:
    """A pretraining run's ``D_pretrain_tokens`` (``seen``, the tokens it trained on) and ``D_pretrain_chars`` (those
    at the corpus's characters per token)."""
    params = {PARAM_D_PRETRAIN_TOKENS: seen}
    tokens, chars = getattr(datamodule, "train_tokens", None), getattr(datamodule, "train_chars", None)
    if tokens and chars:
        params[PARAM_D_PRETRAIN_CHARS] = round(seen * chars / tokens)
    return params


def _trainer_params(trainer: L.Trainer) -> dict[str, str]:
    """What ``auto`` settings resolved to on this machine (``train.precision: auto`` says nothing afterwards)."""
    resolved = {
        "trainer.precision": getattr(trainer, "precision", None),
        "trainer.accelerator": type(getattr(trainer, "accelerator", None)).__name__,
        "trainer.strategy": type(getattr(trainer, "strategy", None)).__name__,
        "trainer.num_devices": getattr(trainer, "num_devices", None),
        "trainer.num_nodes": getattr(trainer, "num_nodes", None),
    }
    return {k: str(v) for k, v in resolved.items() if v is not None and v != "NoneType"}


def _dataset_inputs(facts: RunFacts, datamodule: object) -> list[DatasetSpec]:
    """Training and test data as MLflow dataset inputs, with the DataModule's explicit content digests."""
    if datamodule is None:
        return []
    corpus = str(getattr(datamodule, "corpus_name", None) or facts.target or facts.source or "corpus")
    train_context = {ROLE_PRETRAIN: CONTEXT_PRETRAINING, ROLE_FINETUNE: CONTEXT_FINETUNING}.get(facts.role,
                                                                                              CONTEXT_TRAINING)
    inputs: list[DatasetSpec] = []
    for split, context, digest_attr, tokens_attr in (("train", train_context, "train_digest", "train_tokens"),
                                                     ("test", CONTEXT_TEST, "test_digest", "test_tokens")):
        digest = getattr(datamodule, digest_attr, None)
        if not digest:
            continue
        tokens = getattr(datamodule, tokens_attr, None)
        dataset: DatasetFields = {
            "name": f"{corpus}-{split}",
            "digest": str(digest)[:36],  # MLflow's dataset digest column holds 36 characters
            "source_type": "transfer-laws-corpus",
            "source": json.dumps({"corpus": corpus, "split": split, "digest": str(digest)}),
            "schema": None,
            "profile": json.dumps({"tokens": tokens}),
        }
        tags = {MLFLOW_DATA_CONTEXT: context}
        if tokens is not None:
            tags[TAG_INPUT_TOKENS] = str(int(tokens))
        inputs.append({"dataset": dataset, "tags": tags})
    return inputs

