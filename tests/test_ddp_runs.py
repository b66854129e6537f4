"""The real commands on two CPU processes (gloo, Lightning's own launcher) against the embedded store: one run per
job, the law's numbers the same as on one process, tokens counted once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from transfer_laws.registry.schema import CKPT_TAG_TOKENS_SEEN, PARAM_D_F_TOKENS, PARAM_N, TAG_ROLE

pytestmark = pytest.mark.slow  # six tiny trainings, three of them on two processes: ~4 minutes on 2 busy cores

DATA = ["--corpus-max-mb", "0.5", "--test-tokens", "2048", "--progress-bar", "false"]
TOKENIZER = ["--tokenizer-max-mb", "0.5", "--vocab-size", "300"]
CONTEXT = 128
PRETRAIN_TOKENS = 2900  # ceil(2899 / 128) = 23 windows: odd, so two ranks cannot split them evenly


def _cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess:
    # `-m`: Lightning's launcher starts rank 1 by re-running this same command line.
    proc = subprocess.run([sys.executable, "-m", "transfer_laws.scripts.cli", *argv], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_two_processes_give_one_run_with_the_same_law_numbers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    uri = f"sqlite:///{home / 'mlflow.db'}"
    env = {**os.environ, "TRANSFER_LAWS_HOME": str(home), "MLFLOW_TRACKING_URI": uri}
    env.pop("RANK", None), env.pop("LOCAL_RANK", None)
    home.mkdir()
    two = ["--train.devices", "2", "--train.strategy", "ddp"]
    # Two full epochs, whatever the step count: tokens_seen is then exactly 2 x 23 windows x 128 positions.
    pretrain = ["pretrain", "--preset", "1x32", "--tokens", str(PRETRAIN_TOKENS), "--train.max-steps", "1000",
                "--train.max-epochs", "2", "--train.patience", "100", "--train.eval-every-steps", "2", *DATA,
                *TOKENIZER]
    _cli(env, *pretrain, "--register-as", "one", "--alias", "a")
    _cli(env, *pretrain, "--register-as", "two", "--alias", "a", *two)
    client = MlflowClient(uri, uri)
    seen = {name: int(client.get_model_version_by_alias(name, "a").tags[CKPT_TAG_TOKENS_SEEN])
            for name in ("one", "two")}
    assert seen == {"one": 2 * 23 * CONTEXT, "two": 2 * 23 * CONTEXT}  # no padding window counted
    assert [len(client.search_model_versions(f"name = '{n}'")) for n in ("one", "two")] == [1, 1]

    finetune = ["finetune", "--from", "models:/one@a", "--d-f-tokens", "1500", "--train.max-steps", "24",
                "--refit-bootstrap", "20", "--refit-plots", "false", *DATA]
    _cli(env, *finetune, "--run-name", "ft-one")
    out_two = _cli(env, *finetune, "--run-name", "ft-two", *two).stdout
    assert out_two.count("fine-tuned run") == 1, out_two  # rank 1 prints nothing
    every = client.search_runs([client.get_experiment_by_name("transfer-laws").experiment_id], max_results=100)
    assert len(every) == 4 and {r.info.status for r in every} == {"FINISHED"}  # one run per job, either launcher
    runs = {r.info.run_name: r for r in every}
    one, two_run = runs["ft-one"], runs["ft-two"]
    assert two_run.data.params["trainer.num_devices"] == "2"
    for key in (PARAM_N, PARAM_D_F_TOKENS):
        assert one.data.params[key] == two_run.data.params[key]
    assert one.data.tags[TAG_ROLE] == two_run.data.tags[TAG_ROLE] == "finetune"
    best_one, best_two = (r.data.metrics["best_test_loss"] for r in (one, two_run))
    # Same seed, same global batch, same steps: only the shuffling differs (one order split over two ranks).
    assert abs(best_one - best_two) < 0.02 * best_one, (best_one, best_two)
