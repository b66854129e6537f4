"""Lineage: on real runs (pretrain -> register -> two fine-tunes; the parent shows in tags and model inputs), and as a
contract over every store."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from _plugin_data import CONFIG, ByteTextData
from _stores import Store
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from transfer_laws.lightning_modules import OptimConfig, TrainConfig, TransferLM, build_trainer, save_checkpoint
from transfer_laws.plugin import RunFacts, TransferFactsCallback
from transfer_laws.plugin.webhooks import checkpoint_of
from transfer_laws.registry.checkpoints import load_checkpoint_uri, register_checkpoint
from transfer_laws.registry.lineage import lineage_of_run, lineage_of_version, update_checkpoint_lineage
from transfer_laws.registry.schema import (
    CKPT_LINEAGE_TAGS,
    CKPT_TAG_FINETUNES,
    CKPT_TAG_LAST_FINETUNE,
    METRIC_BEST_TEST_LOSS,
    PARAM_D_F_TOKENS,
    PARAM_N,
    ROLE_FINETUNE,
    ROLE_PRETRAIN,
    TAG_LAW,
    TAG_PARENT,
    TAG_PRETRAIN_RUN,
    TAG_ROLE,
)

SHORT = TrainConfig(max_steps=10, eval_every_steps=5, patience=10, log_every_steps=10)


def _fit(uri: str, facts: RunFacts, data: ByteTextData, init_weights: Path | None = None) -> tuple[str, TransferLM]:
    from lightning.pytorch.loggers import MLFlowLogger

    logger = MLFlowLogger(experiment_name="lineage", tracking_uri=uri)
    module = TransferLM(CONFIG, OptimConfig(lr=3e-3), init_weights=init_weights)
    build_trainer(SHORT, callbacks=[TransferFactsCallback(facts)], logger=logger,
                  enable_progress_bar=False).fit(module, datamodule=data)
    return logger.run_id, module


@pytest.mark.slow
def test_lineage_from_version_and_back_from_run(sqlite_uri: str, tmp_path: Path) -> None:
    source = ByteTextData(corpus_name="stdlib")
    pretrain_id, pretrained = _fit(sqlite_uri, RunFacts(role=ROLE_PRETRAIN, source="stdlib", target=None), source)
    folder = save_checkpoint(pretrained.model, tmp_path / "ckpt",
                             extra={"run_id": pretrain_id, "tokenizer_digest": source.tokenizer_digest})
    register_checkpoint(folder, name="pretrained-stdlib", run_id=pretrain_id)
    parent = load_checkpoint_uri("models:/pretrained-stdlib@champion", dst=tmp_path / "dl")

    finetunes = {}
    for chars in (2_000, 4_000):
        facts = RunFacts(role=ROLE_FINETUNE, source="stdlib", target="textwrap", parent_uri=parent.parent_uri,
                         parent_model_id=parent.model_id, pretrain_run_id=parent.pretrain_run_id)
        data = ByteTextData(corpus_name="textwrap", train_chars=chars)
        run_id, module = _fit(sqlite_uri, facts, data, init_weights=parent.folder)
        finetunes[run_id] = (data.train_tokens, module.best_test_loss)

    client = MlflowClient(sqlite_uri)
    some_finetune = next(iter(finetunes))
    run = client.get_run(some_finetune)
    assert [m.model_id for m in run.inputs.model_inputs] == [parent.model_id]
    assert run.data.tags[TAG_PARENT] == "models:/pretrained-stdlib/1"
    assert run.data.tags[TAG_PRETRAIN_RUN] == pretrain_id
    assert run.data.tags[TAG_LAW] == "stdlib-to-textwrap"

    lineage = lineage_of_version("models:/pretrained-stdlib/1", page_size=1)  # one run per page: paginates
    assert {r.run_id: r.d_f_tokens for r in lineage} == {k: v[0] for k, v in finetunes.items()}
    assert all(r.best_test_loss == pytest.approx(finetunes[r.run_id][1], rel=1e-6) for r in lineage)
    assert all(r.status == "FINISHED" for r in lineage)
    assert lineage_of_version("models:/pretrained-stdlib@champion") == lineage  # an alias resolves to the version
    assert [r.n_params for r in lineage] == [pretrained.n_params] * 2 and all(r.name for r in lineage)
    assert [r.run_id for r in lineage] == list(finetunes)  # oldest first

    # the way down, in the registry itself: the checkpoint version's tags and description, kept current
    mv = client.get_model_version("pretrained-stdlib", "1")
    assert (mv.tags[CKPT_TAG_FINETUNES], mv.tags[CKPT_TAG_LAST_FINETUNE]) == ("2", list(finetunes)[-1])
    assert "2 run(s) started from this version" in mv.description
    for run_id, (_, loss) in finetunes.items():
        name = client.get_run(run_id).info.run_name
        assert f"[{name}](#/experiments/" in mv.description and f"{loss:.4f}" in mv.description
    model = client.get_logged_model(parent.model_id)  # what the fine-tune's "Logged models: Input" opens
    assert json.loads(model.tags["mlflow.modelVersions"]) == [{"name": "pretrained-stdlib", "version": 1}]

    back = lineage_of_run(some_finetune)
    assert (back.parent_uri, back.pretrain_run_id) == ("models:/pretrained-stdlib/1", pretrain_id)
    by_context = {i.context: i for i in back.pretrain_inputs}
    assert set(by_context) == {"pretraining", "test"}
    assert source.train_digest.startswith(by_context["pretraining"].digest)
    assert lineage_of_run(pretrain_id).parent_uri is None


def _land_finetune(writer: MlflowClient, experiment: str, parent: str, pretrain: str, d_f: int, loss: float | None,
                   started: int) -> str:
    """A fine-tune of ``parent`` with the facts the callback logs, started at ``started`` ms; FINISHED when it has a
    loss, else still training."""
    run_id = writer.create_run(experiment, start_time=started, tags={
        TAG_ROLE: ROLE_FINETUNE, TAG_PARENT: parent, TAG_PRETRAIN_RUN: pretrain}).info.run_id
    writer.log_batch(run_id, params=[Param(PARAM_N, "1000"), Param(PARAM_D_F_TOKENS, str(d_f))],
                     metrics=[] if loss is None else [Metric(METRIC_BEST_TEST_LOSS, loss, 0, 0)])
    if loss is not None:
        writer.set_terminated(run_id, "FINISHED")
    return run_id


def test_lineage_over_every_store(store: Store) -> None:
    """Pagination across experiments, oldest first, a run still training, an alias, the version's lineage tags and
    description, and the walk back from a run: the same on every store."""
    client, writer = store.client(), store.writer()
    name = f"pretrained-{uuid.uuid4().hex[:8]}"
    first, second = store.experiment("a"), store.experiment("b")
    pretrain = client.create_run(first).info.run_id
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{pretrain}/checkpoint", run_id=pretrain)
    client.set_registered_model_alias(name, "champion", "1")
    exact, start = f"models:/{name}/1", 1_700_000_000_000
    runs = [_land_finetune(writer, exp, exact, pretrain, d_f, loss, start + i)
            for i, (exp, d_f, loss) in enumerate([(first, 2000, 3.5), (second, 4000, 3.25), (first, 8000, None)])]
    _land_finetune(writer, first, f"models:/{name}/2", pretrain, 1000, 3.0, start)  # another version's

    lineage = lineage_of_version(exact, tracking_uri=store.uri, page_size=1)  # one run per page: paginates
    assert [r.run_id for r in lineage] == runs  # oldest first
    assert [(r.d_f_tokens, r.best_test_loss, r.status) for r in lineage] == [
        (2000, 3.5, "FINISHED"), (4000, 3.25, "FINISHED"), (8000, None, "RUNNING")]
    assert [r.n_params for r in lineage] == [1000] * 3 and [r.experiment_id for r in lineage] == [first, second, first]
    assert lineage_of_version(f"models:/{name}@champion", tracking_uri=store.uri) == lineage  # an alias resolves

    assert update_checkpoint_lineage(client, exact) == lineage
    mv = client.get_model_version(name, "1")
    assert (mv.tags[CKPT_TAG_FINETUNES], mv.tags[CKPT_TAG_LAST_FINETUNE]) == ("3", runs[-1])
    assert "3 run(s) started from this version" in mv.description and "(training)" in mv.description
    assert all(f"/runs/{run_id}?" in mv.description for run_id in runs)

    back = lineage_of_run(runs[0], tracking_uri=store.uri)
    assert (back.parent_uri, back.pretrain_run_id) == (exact, pretrain)
    for uri in (f"models:/{name}@nobody", f"models:/{name}/9", "models:/nothing/1"):
        with pytest.raises(ValueError, match="is not in the registry"):
            lineage_of_version(uri, tracking_uri=store.uri)
    with pytest.raises(ValueError, match="not a checkpoint URI"):
        lineage_of_version(name, tracking_uri=store.uri)


def test_checkpoint_versions_read_the_same_on_every_store(store: Store) -> None:
    """The one reader of a checkpoint version's tags: a version by URI or alias, every version of a name, the versions
    a run made; with their aliases, and None for a tag that is missing or not a number."""
    from transfer_laws.registry.lineage import checkpoint_version, versions_made_by, versions_named
    from transfer_laws.registry.schema import (
        CKPT_KIND_PRETRAINED,
        CKPT_TAG_CORPUS,
        CKPT_TAG_KIND,
        CKPT_TAG_N,
        CKPT_TAG_TOKENS_SEEN,
    )

    client = store.client()
    name = f"pretrained-{uuid.uuid4().hex[:8]}"
    pretrain, other = (client.create_run(store.experiment("ckpt")).info.run_id for _ in range(2))
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{pretrain}/checkpoint", run_id=pretrain, tags={
        CKPT_TAG_KIND: CKPT_KIND_PRETRAINED, CKPT_TAG_N: "12768", CKPT_TAG_TOKENS_SEEN: "1.2e5",
        CKPT_TAG_CORPUS: "text"})
    client.create_model_version(name, f"runs:/{other}/checkpoint", run_id=other, tags={CKPT_TAG_N: "many"})
    client.set_registered_model_alias(name, "champion", "1")
    client.set_registered_model_alias(name, "b-side", "1")

    first = checkpoint_version(client, f"models:/{name}@champion")
    assert (first.uri, first.run_id, first.aliases) == (f"models:/{name}/1", pretrain, ("b-side", "champion"))
    assert (first.kind, first.n_params, first.tokens_seen, first.corpus) == (CKPT_KIND_PRETRAINED, 12768, 120000,
                                                                             "text")
    second = checkpoint_version(client, f"models:/{name}/2")
    assert (second.kind, second.n_params, second.tokens_seen, second.corpus, second.aliases) == (
        None, None, None, None, ())
    assert versions_named(client, name) == [first, second]  # aliases too, though a search carries none
    assert versions_made_by(client, other) == [second]
    assert versions_named(client, "no-such-model") == [] and versions_named(client, "it's") == []
    with pytest.raises(ValueError, match="names no registered model version"):
        checkpoint_version(client, f"models:/{name}@nobody")


def test_lineage_bookkeeping_triggers_no_refit() -> None:
    """Each fine-tune start rewrites its checkpoint version's lineage tags; MLflow sends a webhook for each, which
    must not enqueue a refit (a real tag change, e.g. the corpus, still does)."""
    def tag_set(key: str) -> dict:
        return {"entity": "model_version_tag", "action": "set",
                "data": {"name": "pretrained-text", "version": "1", "key": key, "value": "x"}}

    assert [checkpoint_of(tag_set(key)) for key in CKPT_LINEAGE_TAGS] == [None] * 3
    assert checkpoint_of(tag_set("corpus")) == ("pretrained-text", "1")
