"""The real commands under ``torchrun`` on two CPU processes (gloo) against the real server stack: one run per job
with exact tags, one checkpoint version, the server's hook reading the runs into a law version; and a rank killed
mid-run failing the command and the run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from law_runs import land_finetunes, land_scratch_runs
from mlflow import MlflowClient

from transfer_laws.registry import schema
from transfer_laws.registry.refit import INPUTS_ARTIFACT

pytestmark = [pytest.mark.server, pytest.mark.slow]

DATA = ["--corpus-max-mb", "0.5", "--test-tokens", "2048", "--progress-bar", "false"]
TOKENIZER = ["--tokenizer-max-mb", "0.5", "--vocab-size", "300"]
N_1X32 = 12_768
D_F = 1500


def _torchrun(*argv: str, env: dict[str, str], entry_point: bool = False) -> list[str]:
    """``torchrun --standalone --nproc-per-node 2`` of the CLI: ``-m``, or the installed entry point's script."""
    target = [str(Path(sys.executable).parent / "transfer-laws")] if entry_point else ["-m",
                                                                                        "transfer_laws.scripts.cli"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *target, *argv]


def _run(cmd: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


@pytest.fixture(scope="module")
def job(server_stack, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A target corpus of its own (so its law is this test's alone), a home, the server's URI."""
    tag = uuid.uuid4().hex[:8]
    target = tmp_path_factory.mktemp("corpus") / f"t{tag}"
    target.mkdir()
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:120]:
        shutil.copy(path, target / path.name)
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env.update(TRANSFER_LAWS_HOME=str(home), MLFLOW_TRACKING_URI=server_stack.tracking_uri)
    return {"target": str(target), "law": f"text-to-t{tag}", "checkpoint": f"pretrained-text-{tag}",
            "experiment": f"torchrun-{tag}", "env": env, "uri": server_stack.tracking_uri}


def _runs(client: MlflowClient, experiment: str, role: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=100)
    return [r for r in runs if r.data.tags.get(schema.TAG_ROLE) == role]


def _read_by_version(client: MlflowClient, law: str, run_ids: set[str], timeout_s: float = 300) -> list[str]:
    """Versions of ``law`` whose refit read every one of ``run_ids``, once some exists and none appears for 20 s."""
    deadline, found, quiet_since = time.monotonic() + timeout_s, [], time.monotonic()
    while time.monotonic() < deadline:
        now = []
        for mv in client.search_model_versions(f"name = '{schema.law_model_name(law)}'"):
            with tempfile.TemporaryDirectory() as tmp:
                inputs = json.loads(Path(client.download_artifacts(mv.run_id, INPUTS_ARTIFACT, tmp)).read_text())
            if run_ids <= set(inputs["read_run_ids"]):
                now.append(mv.version)
        if now != found:
            found, quiet_since = now, time.monotonic()
        elif found and time.monotonic() - quiet_since > 20:
            return found
        time.sleep(2)
    raise AssertionError(f"no version of {law} read {sorted(run_ids)} within {timeout_s} s")


def test_pretrain_finetune_and_scratch_under_torchrun_are_one_run_each(job: dict) -> None:
    client = MlflowClient(job["uri"], job["uri"])
    common = ["--experiment", job["experiment"], *DATA]
    _run(_torchrun("pretrain", "--preset", "1x32", "--tokens", "3000", "--train.max-steps", "6",
                   "--register-as", job["checkpoint"], "--alias", "demo-1x32", *TOKENIZER, *common, env=job["env"]),
         job["env"])
    pretrains = _runs(client, job["experiment"], schema.ROLE_PRETRAIN)
    versions = client.search_model_versions(f"name = '{job['checkpoint']}'")
    assert len(pretrains) == 1 and len(versions) == 1  # one run, one checkpoint version, from rank 0 alone
    assert versions[0].run_id == pretrains[0].info.run_id
    assert pretrains[0].data.params["trainer.num_devices"] == "2"
    digest = versions[0].tags[schema.CKPT_TAG_TOKENIZER_DIGEST]

    # A law to read the runs into: synthetic curves of this target with the checkpoint's tokenizer.
    exp = client.create_experiment(f"{job['experiment']}-synthetic")
    land_scratch_runs(client, exp, law=job["law"], digest=digest)
    land_finetunes(client, exp, 12, law=job["law"], digest=digest)

    parent = f"models:/{job['checkpoint']}@demo-1x32"
    ft_out = _run(_torchrun("finetune", "--from", parent, "--target", job["target"], "--d-f-tokens", str(D_F),
                            "--train.max-steps", "12", *common, env=job["env"], entry_point=True), job["env"])
    _run(_torchrun("scratch", "--preset", "1x32", "--tokenizer-from", parent, "--target", job["target"],
                   "--d-f-tokens", str(D_F), "--train.max-steps", "12", *common, env=job["env"]), job["env"])
    assert ft_out.count("fine-tuned run") == 1, ft_out  # rank 0 reports, rank 1 prints nothing

    target = job["target"].rsplit("/", 1)[-1]
    (finetune,) = _runs(client, job["experiment"], schema.ROLE_FINETUNE)
    (scratch,) = _runs(client, job["experiment"], schema.ROLE_SCRATCH)
    assert finetune.info.status == scratch.info.status == "FINISHED"
    keys = (schema.TAG_ROLE, schema.TAG_LAW, schema.TAG_SOURCE, schema.TAG_TARGET, schema.TAG_PARENT,
            schema.TAG_TOKENIZER)
    assert [finetune.data.tags.get(k) for k in keys] == [schema.ROLE_FINETUNE, job["law"], "text", target,
                                                         f"models:/{job['checkpoint']}/1", digest]
    assert (scratch.data.tags[schema.TAG_ROLE], scratch.data.tags[schema.TAG_TARGET]) == (schema.ROLE_SCRATCH, target)
    assert finetune.data.params[schema.PARAM_N] == scratch.data.params[schema.PARAM_N] == str(N_1X32)
    assert finetune.data.params[schema.PARAM_D_F_TOKENS] == scratch.data.params[schema.PARAM_D_TOKENS] == str(D_F)
    for run in (finetune, scratch):
        assert run.data.params["trainer.num_devices"] == "2" and schema.TAG_FAILURE not in run.data.tags

    # The server's hook (not this process: it is not the embedded store) read both runs into a version.
    read = _read_by_version(client, job["law"], {finetune.info.run_id, scratch.info.run_id})
    assert len(read) == 1, read


def _rank_one(launcher_pid: int) -> int | None:
    """The pid of global rank 1 among the launcher's children (torchrun sets RANK in each one's environment)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == launcher_pid and b"\0RANK=1\0" in b"\0" + (stat.parent / "environ").read_bytes():
                return int(stat.parent.name)
        except (OSError, IndexError, ValueError):
            continue
    return None


def test_a_rank_killed_mid_run_fails_the_command_and_the_run(job: dict) -> None:
    client = MlflowClient(job["uri"], job["uri"])
    experiment = f"{job['experiment']}-killed"
    cmd = _torchrun("scratch", "--preset", "1x32", "--target", job["target"], "--d-f-tokens", str(D_F),
                    "--train.max-steps", "100000", "--train.max-epochs", "100000", "--train.patience", "100000",
                    "--experiment", experiment, *DATA, *TOKENIZER, env=job["env"])
    launcher = subprocess.Popen(cmd, env=job["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 600
        while not _training(client, experiment):  # steps logged: the ranks are inside their collectives
            assert launcher.poll() is None and time.monotonic() < deadline, launcher.stdout.read()[-4000:]
            time.sleep(1)
        victim = _rank_one(launcher.pid)
        assert victim is not None
        os.kill(victim, 9)
        out = launcher.communicate(timeout=300)[0]
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode != 0, out[-3000:]
    (run,) = _runs(client, experiment, schema.ROLE_SCRATCH)
    assert run.info.status == "FAILED"
    assert run.data.tags[schema.TAG_FAILURE]  # why, in the run
    # Rank 0 reports the failure in its own words, unless the launcher's SIGTERM (sent within 0.1 s of rank 1's
    # death) ends it first: inside the fit (Lightning's handler: "terminated") or in the instant between the fit and
    # the error line (the launcher then reports rank 0's exit code -15). The run above is FAILED with its reason
    # in every case.
    said = (f"run {run.info.run_id} failed on rank 0 of 2" in out
            or "terminated (SIGTERM); the run is marked FAILED" in out
            or re.search(r"rank\s*: 0 \(local_rank: 0\)\n\s*exitcode\s*: -15 ", out) is not None)
    assert said, out[-3000:]


def _training(client: MlflowClient, experiment: str) -> bool:
    """The experiment's run is RUNNING and has logged a training loss (a step was taken on every rank)."""
    exp = client.get_experiment_by_name(experiment)
    runs = [] if exp is None else client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
    return any(schema.METRIC_TRAIN_LOSS in r.data.metrics for r in runs)


def test_two_distributed_sweep_workers_share_one_study_and_train_no_cell_twice(job: dict, server_stack) -> None:
    """The multi-node sweep on one machine: two ``torchrun ... sweep --worker`` jobs of two processes each."""
    import optuna
    from optuna.trial import TrialState

    from transfer_laws.plugin.recipes import workspace
    from transfer_laws.plugin.sweeps import ATTR_RUN_ID

    client = MlflowClient(job["uri"], job["uri"])
    study = f"ddp-sweep-{job['law']}"
    home = Path(job["env"]["TRANSFER_LAWS_HOME"])
    workspace.corpus_dir("python", 500_000, home)  # built once here, not raced by four processes
    workspace.tokenizer_dir("text", 300, 500_000, home)
    common = ["sweep", "--roles", "scratch", "--sizes", "1x32", "--d-f-tokens", "1000,1500,2000", "--study", study,
              "--storage", server_stack.pg_uri, "--experiment", study, "--train.max-steps", "8",
              "--train.eval-every-steps", "4", "--refit-bootstrap", "20", *DATA, *TOKENIZER]
    _run([sys.executable, "-m", "transfer_laws.scripts.cli", *common, "--max-trials", "0"], job["env"])
    workers = [subprocess.Popen(_torchrun(*common, "--worker", "true", env=job["env"]), env=job["env"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=900)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [o[-3000:] for o in outputs]

    trials = optuna.load_study(study_name=study, storage=server_stack.pg_uri).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    cells = sorted(t.system_attrs["fixed_params"]["d_f_tokens"] for t in complete)
    assert cells == [1000, 1500, 2000], [(t.number, t.state) for t in trials]  # every cell once
    runs = client.search_runs([client.get_experiment_by_name(study).experiment_id], max_results=100)
    trained = [r for r in runs if r.data.tags.get(schema.TAG_ROLE) == schema.ROLE_SCRATCH]
    assert len(trained) == 3  # one run per trial: the ranks of a job never pull trials of their own
    assert {t.user_attrs[ATTR_RUN_ID] for t in complete} == {r.info.run_id for r in trained}
    for r in trained:
        assert r.info.status == "FINISHED" and r.data.params["trainer.num_devices"] == "2"
        assert r.data.tags[schema.TAG_SWEEP] == study and r.data.tags[schema.TAG_TRIAL].isdigit()
