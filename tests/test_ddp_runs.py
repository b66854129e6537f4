"""The real commands on two CPU processes (gloo, Lightning's own launcher) against the embedded store: one run per
job, the law's numbers the same as on one process, tokens counted once; under torchrun, no rank leaves a process
group (and its gloo threads) alive for interpreter exit to abort on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from transfer_laws.registry.schema import CKPT_TAG_TOKENS_SEEN, PARAM_D_F_TOKENS, PARAM_N, TAG_ROLE, TAG_SWEEP

pytestmark = pytest.mark.slow  # eight tiny trainings, five of them on two processes: ~5 minutes on 2 busy cores

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


# Each rank runs the real command line, then reports what is left of its process groups: a gloo group alive at
# interpreter exit can abort the rank (SIGABRT) after a run that went well (see lightning_modules/distributed.py).
RANK_SCRIPT = """
import json, os, sys
from pathlib import Path

import torch.distributed as dist

from transfer_laws.scripts import cli

code = cli.main(sys.argv[2:])
threads = sorted(Path(f"/proc/self/task/{t}/comm").read_text().strip() for t in os.listdir("/proc/self/task"))
Path(sys.argv[1], f"rank{os.environ['RANK']}.json").write_text(
    json.dumps({"code": code, "group": dist.is_initialized(), "threads": threads}))
sys.exit(code)
"""
GLOO_THREADS = ("pt_gloo_runloop", "gloo_tcp_loop")
"""The names torch gives a gloo group's worker threads and its transport's loop thread."""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread names from /proc")
def test_no_rank_leaves_a_process_group_to_interpreter_exit(tmp_path: Path) -> None:
    """A run (the group is Lightning's) and a distributed sweep worker (the job's own groups, for all its trials)."""
    home = tmp_path / "home"
    uri = f"sqlite:///{home / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env.update(TRANSFER_LAWS_HOME=str(home), MLFLOW_TRACKING_URI=uri)
    home.mkdir()
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    run = ["--d-f-tokens", "1500", "--train.max-steps", "8", "--refit-bootstrap", "20", "--refit-plots", "false",
           *DATA, *TOKENIZER]
    sweep = ["sweep", "--roles", "scratch", "--sizes", "1x32", "--study", "s", "--experiment", "s",
             "--train.eval-every-steps", "4", *run]
    _cli(env, *sweep, "--max-trials", "0")
    for name, argv in (("scratch", ["scratch", "--preset", "1x32", "--run-name", "job", *run]),
                       ("sweep", [*sweep, "--worker", "true"])):
        out = tmp_path / name
        out.mkdir()
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                               str(script), str(out), *argv], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0 and "terminate called" not in proc.stderr, proc.stderr[-3000:]
        ranks = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))}
        assert set(ranks) == {"rank0", "rank1"}, proc.stderr[-3000:]
        for rank, left in ranks.items():
            assert left["code"] == 0 and not left["group"], (name, rank, left)
            assert not set(left["threads"]) & set(GLOO_THREADS), (name, rank, left["threads"])
    client = MlflowClient(uri)
    runs = {r.info.run_name: r for e in client.search_experiments()
            for r in client.search_runs([e.experiment_id], max_results=100)}
    # Rank 0 wrote the runs after the group ended: both FINISHED, with their facts.
    job = runs["job"]
    assert job.info.status == "FINISHED" and job.data.params["trainer.num_devices"] == "2"
    (trial,) = [r for r in runs.values() if r.data.tags.get(TAG_SWEEP) == "s" and r.data.tags.get(TAG_ROLE)]
    assert trial.info.status == "FINISHED" and trial.data.params["trainer.num_devices"] == "2"
