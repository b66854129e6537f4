"""TransferFactsCallback on real short fits: MLFlowLogger and fluent runs, failure, unreachable server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import yaml
from _plugin_data import CONFIG, ByteTextData, PoisonAtStep13

from transfer_laws.lightning_modules import OptimConfig, TrainConfig, TrainingDiverged, TransferLM, build_trainer
from transfer_laws.plugin import RunFacts, TransferFactsCallback, replay_facts
from transfer_laws.plugin.run_config import config_params, exact_count, resolved_config
from transfer_laws.registry.schema import (
    CONFIG_ARTIFACT,
    METRIC_BEST_TEST_LOSS,
    METRIC_N,
    PARAM_CONTEXT,
    PARAM_D_CHARS,
    PARAM_D_F_CHARS,
    PARAM_D_F_TOKENS,
    PARAM_D_PRETRAIN_CHARS,
    PARAM_D_PRETRAIN_TOKENS,
    PARAM_D_TOKENS,
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
    TAG_LAW,
    TAG_ROLE,
    TAG_SOURCE,
    TAG_TARGET,
    TAG_TOKENIZER,
)

SHORT = TrainConfig(max_steps=20, eval_every_steps=10, patience=10, log_every_steps=10)


def _fit(facts: RunFacts, logger: object = None, callbacks: tuple[L.Callback, ...] = (),
         data: ByteTextData | None = None, module: TransferLM | None = None,
         facts_callback: TransferFactsCallback | None = None) -> tuple[TransferLM, ByteTextData]:
    data = data or ByteTextData()
    module = module or TransferLM(CONFIG, OptimConfig(lr=3e-3))
    trainer = build_trainer(SHORT, callbacks=[*callbacks, facts_callback or TransferFactsCallback(facts)],
                            logger=logger, enable_progress_bar=False)
    trainer.fit(module, datamodule=data)
    return module, data


def test_run_facts_validate_and_tag() -> None:
    with pytest.raises(ValueError, match="role must be one of"):
        RunFacts(role="pre-train", source="text", target=None)
    with pytest.raises(ValueError, match="needs parent_uri"):
        RunFacts(role=ROLE_FINETUNE, source="text", target="python")
    with pytest.raises(ValueError, match="models:/name/version"):
        RunFacts(role=ROLE_FINETUNE, source="text", target="python", parent_uri="runs:/x")
    tags = RunFacts(role=ROLE_FINETUNE, source="text", target="python", parent_uri="models:/p/2").tags()
    assert tags[TAG_LAW] == "text-to-python"
    assert TAG_LAW not in RunFacts(role=ROLE_SCRATCH, source=None, target="python").tags()


def test_plugin_import_is_light() -> None:
    code = "import sys, transfer_laws.plugin; assert 'mlflow' not in sys.modules and 'lightning' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_mlflow_logger_run_gets_facts(sqlite_uri: str) -> None:
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow import MlflowClient

    logger = MLFlowLogger(experiment_name="facts", tracking_uri=sqlite_uri)
    facts = RunFacts(role=ROLE_PRETRAIN, source="stdlib", target=None)
    optim = OptimConfig(lr=3e-3, warmup_steps=7)
    config = resolved_config(model=CONFIG, optim=optim, train=SHORT, data={"batch_size": 4, "cache_dir": "/x/y"})
    module, data = _fit(facts, logger=logger, facts_callback=TransferFactsCallback(facts, config=config))
    client = MlflowClient(sqlite_uri)
    configured = client.get_run(logger.run_id).data.params
    # every resolved setting is a param, and the whole config comes back from the YAML artifact
    assert (configured["optim.lr"], configured["optim.warmup_steps"], configured["optim.betas"]) == (
        "0.003", "7", "0.9,0.95")
    assert (configured["train.max_steps"], configured["train.precision"], configured["train.seed"]) == (
        str(SHORT.max_steps), SHORT.precision, str(SHORT.seed))
    assert configured["data.batch_size"] == "4" and "data.cache_dir" not in configured  # paths: YAML only
    # what "auto" became on this machine
    assert (configured["trainer.accelerator"], configured["trainer.num_devices"]) == ("CPUAccelerator", "1")
    assert configured["trainer.precision"] in ("32-true", "bf16-mixed", "16-mixed")
    yaml_text = Path(client.download_artifacts(logger.run_id, CONFIG_ARTIFACT)).read_text()
    assert yaml.safe_load(yaml_text) == config

    run = client.get_run(logger.run_id)
    params = run.data.params
    assert int(params[PARAM_N]) == module.n_params
    assert int(params[PARAM_N_TOTAL]) == module.n_params_total > module.n_params
    # pretraining data is not D_F, and it is what the run trained on (not its corpus's size, logged apart)
    assert int(params[PARAM_D_PRETRAIN_TOKENS]) == module.tokens_seen > 0
    assert int(params[PARAM_D_PRETRAIN_CHARS]) == round(module.tokens_seen * data.train_chars / data.train_tokens)
    assert (int(params[PARAM_PRETRAIN_CORPUS_TOKENS]), int(params[PARAM_PRETRAIN_CORPUS_CHARS])) == (
        data.train_tokens, data.train_chars)
    assert run.data.metrics[METRIC_N] == module.n_params  # N as a number, for sorting
    assert PARAM_D_F_TOKENS not in params and PARAM_D_F_CHARS not in params and PARAM_TRAIN_SPLIT_TOKENS not in params
    assert [int(params[p]) for p in (PARAM_N_LAYER, PARAM_N_HEAD, PARAM_N_EMBD, PARAM_CONTEXT, PARAM_VOCAB)] == [
        CONFIG.n_layer, CONFIG.n_head, CONFIG.n_embd, CONFIG.context_length, CONFIG.vocab_size]
    tags = run.data.tags
    assert (tags[TAG_ROLE], tags[TAG_SOURCE], tags[TAG_TOKENIZER]) == (ROLE_PRETRAIN, "stdlib", data.tokenizer_digest)
    assert TAG_TARGET not in tags
    assert run.data.metrics[METRIC_BEST_TEST_LOSS] == pytest.approx(module.best_test_loss, rel=1e-6)
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"stdlib-train", "stdlib-test"}
    train_tags = {t.key: t.value for t in inputs["stdlib-train"].tags}
    test_tags = {t.key: t.value for t in inputs["stdlib-test"].tags}
    assert train_tags["mlflow.data.context"] == "pretraining" and test_tags["mlflow.data.context"] == "test"
    assert int(train_tags["transfer.tokens"]) == data.train_tokens
    assert data.train_digest.startswith(inputs["stdlib-train"].dataset.digest)
    assert json.loads(inputs["stdlib-test"].dataset.source)["digest"] == data.test_digest


def test_fluent_active_run_gets_facts(sqlite_uri: str) -> None:
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(sqlite_uri)
    for model in ("pretrained-stdlib", "transfer-law-code-to-textwrap", "transfer-law-code-to-python", "unrelated"):
        client.create_registered_model(model)
    with mlflow.start_run() as active:
        module, data = _fit(RunFacts(role=ROLE_SCRATCH, source=None, target="textwrap"))
    run = mlflow.get_run(active.info.run_id)
    assert run.data.tags[TAG_TARGET] == "textwrap"
    # the laws this scratch run serves, so one LIKE filter finds a law's fine-tunes and scratch runs
    assert run.data.tags[TAG_LAW] == "code-to-textwrap,stdlib-to-textwrap"
    found = client.search_runs([active.info.experiment_id], "tags.`transfer.law` LIKE '%stdlib-to-textwrap%'")
    assert [r.info.run_id for r in found] == [active.info.run_id]
    assert int(run.data.params[PARAM_D_TOKENS]) == data.train_tokens  # scratch data is D, not D_F
    assert int(run.data.params[PARAM_D_CHARS]) == data.train_chars
    # the split its D was cut from: the largest D this corpus can supply, which next-run advice stays within
    assert int(run.data.params[PARAM_TRAIN_SPLIT_TOKENS]) == data.split_tokens >= data.train_tokens
    assert PARAM_D_F_TOKENS not in run.data.params
    assert run.data.metrics[METRIC_BEST_TEST_LOSS] == pytest.approx(module.best_test_loss, rel=1e-6)
    contexts = {t.value for i in run.inputs.dataset_inputs for t in i.tags if t.key == "mlflow.data.context"}
    assert contexts == {"training", "test"}  # trained from scratch: not "fine-tuning"
    assert run.data.tags["mlflow.note.content"].startswith(f"Trained from scratch on {data.train_tokens:,} tokens of "
                                                          "`textwrap` (D)")


def test_config_params_and_exact_names(tmp_path: Path) -> None:
    from dataclasses import replace

    config = resolved_config(optim=OptimConfig(lr=1e-4), train=replace(SHORT, max_time_s=None), role="scratch",
                             data={"tokenizer_dir": "tok", "seed": 3, "corpus": str(tmp_path / "corpus")})
    params = config_params(config)
    assert params["optim.lr"] == "0.0001" and params["train.max_time_s"] == "None" and "role" not in params
    assert params["data.seed"] == "3"
    assert not {"data.tokenizer_dir", "data.corpus"} & set(params)  # one machine's folders stay out of params
    assert [exact_count(v) for v in (2000, 2500, 20_000, 24_832, 3_000_000, 0)] == [
        "2k", "2500", "20k", "24832", "3M", "0"]
    from transfer_laws.plugin.training import default_run_name

    assert default_run_name("finetune", 24_832, 2500) == "finetune-N24832-D2500"
    assert default_run_name("finetune", 24_832, 2000) != default_run_name("finetune", 24_832, 2500)
    assert default_run_name("pretrain", 100_000, None) == "pretrain-N100k"


def test_nan_marks_run_failed_with_reason(sqlite_uri: str) -> None:
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow import MlflowClient

    logger = MLFlowLogger(experiment_name="facts", tracking_uri=sqlite_uri)
    with pytest.raises(TrainingDiverged):
        _fit(RunFacts(role=ROLE_PRETRAIN, source="stdlib", target=None), logger=logger, callbacks=(PoisonAtStep13(),))
    run = MlflowClient(sqlite_uri).get_run(logger.run_id)
    assert run.info.status == "FAILED"
    assert "TrainingDiverged" in run.data.tags[TAG_FAILURE] and "nan" in run.data.tags[TAG_FAILURE]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_keeps_facts_on_disk(sqlite_uri: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    client = MlflowClient(sqlite_uri)
    run_id = client.create_run(client.create_experiment("offline")).info.run_id
    facts = RunFacts(role=ROLE_PRETRAIN, source="stdlib", target=None)
    callback = TransferFactsCallback(facts, run_id=run_id, tracking_uri=f"http://127.0.0.1:{_closed_port()}",
                                     fallback_dir=tmp_path / "ckpt", retry_wait_s=0.01)
    with pytest.warns(UserWarning, match="saved to"):
        module, data = _fit(facts, facts_callback=callback)
    assert callback.facts_file == tmp_path / "ckpt" / "unwritten-run-facts.json"
    saved = json.loads(callback.facts_file.read_text())
    # at the start: params, N as a metric, tags, inputs; at the end: best loss, then the tokens pretraining saw
    assert [g["kind"] for g in saved["groups"]] == ["params", "metrics", "tags", "inputs", "metrics", "params"]
    assert client.get_run(run_id).data.params == {}  # nothing reached the store...
    assert replay_facts(callback.facts_file, tracking_uri=sqlite_uri) == 6  # ...and nothing is lost
    run = client.get_run(run_id)
    assert int(run.data.params[PARAM_N]) == module.n_params
    assert int(run.data.params[PARAM_D_PRETRAIN_TOKENS]) == module.tokens_seen
    assert run.data.tags[TAG_ROLE] == ROLE_PRETRAIN
    assert run.data.metrics[METRIC_BEST_TEST_LOSS] == pytest.approx(module.best_test_loss, rel=1e-6)
    assert len(run.inputs.dataset_inputs) == 2
