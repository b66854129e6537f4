"""Progress and lifecycle on the command line: a training run reports steps, tokens/s and held-out loss while it
runs (no TTY: plain lines), ETAs weigh runs by compute, a standalone run says what its refit did, and ``serve``
fails on a busy port and says "ready" only once the server answers."""

from __future__ import annotations

import inspect
import io
import math
import re
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from transfer_laws.scripts import cli

CONTEXT = 32


def _loader(text: str, batch_size: int) -> DataLoader:
    ids = torch.tensor(list(text.encode("utf-8")), dtype=torch.long)
    n = (len(ids) - 1) // CONTEXT
    return DataLoader(TensorDataset(ids[: n * CONTEXT].view(n, CONTEXT), ids[1: n * CONTEXT + 1].view(n, CONTEXT)),
                      batch_size=batch_size)


def test_training_without_a_tty_prints_progress_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lightning as L

    from transfer_laws.lightning_modules import GPTConfig, OptimConfig, TransferLM
    from transfer_laws.lightning_modules.train import LineProgress, progress_callbacks

    monkeypatch.chdir(tmp_path)
    stream = io.StringIO()
    bar, callbacks = progress_callbacks(True, stream)
    assert bar is False and len(callbacks) == 1 and isinstance(callbacks[0], LineProgress)
    callbacks[0].every_s = 0.0  # a line after every step: the test does not wait for the interval
    module = TransferLM(GPTConfig(vocab_size=256, context_length=CONTEXT, n_layer=1, n_head=2, n_embd=16),
                        OptimConfig(lr=1e-2, warmup_steps=2))
    trainer = L.Trainer(max_steps=12, val_check_interval=6, check_val_every_n_epoch=None, num_sanity_val_steps=0,
                        logger=False, enable_checkpointing=False, enable_model_summary=False,
                        enable_progress_bar=bar, callbacks=callbacks)
    trainer.fit(module, _loader(inspect.getsource(textwrap)[:4000], 4),
                _loader(inspect.getsource(textwrap)[4000:6000], 8))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 13  # one per step and the closing line
    assert re.match(r"\[train\] step 1/12 epoch 0 \| [\d,]+ tok/s \| test_loss - \| \d+ s$", lines[0])
    assert re.search(r"step 7/12 .*test_loss \d\.\d{4} \(best \d\.\d{4}\)", lines[6])  # after the first eval
    assert lines[-1].startswith("[train] done: step 12/12") and "(mean)" in lines[-1]
    assert "\r" not in stream.getvalue()  # no bar redraws in a log file


def test_eta_weighs_runs_by_compute() -> None:
    from transfer_laws.plugin.sweeps.eta import eta_seconds, planned_tokens, run_cost_model

    # Runs cost 5 s each plus 1 s per 1e8 of compute: the fit recovers both from three finished runs.
    done = [1e10, 1e8, 3e8]
    durations = [5 + c / 1e8 for c in done]
    overhead, per_compute = run_cost_model(durations, done)
    assert overhead == pytest.approx(5.0) and per_compute == pytest.approx(1e-8)
    assert eta_seconds(durations, done, [1e8, 1e8]) == pytest.approx(2 * 6.0)
    # Per run (the old ETA) it would have said about 2 x 40 s, the mean of a big and two small runs.
    # One finished run cannot separate the two: the prior overhead (here 3 s) is taken out of its time.
    assert eta_seconds([103.0], [1e9], [1e7, 1e7], prior_overhead_s=3.0) == pytest.approx(2 * 3.0 + 2 * 1.0)
    assert math.isnan(eta_seconds([], [], [1.0]))  # nothing to learn from yet
    assert eta_seconds([10.0], [1.0], []) == 0.0
    assert planned_tokens(1_000, 1024, 1000) == 40 * 1024  # a tiny budget still trains min_steps steps
    assert planned_tokens(1e7, 1024, 1000) == 1000 * 1024  # a big one stops at max_steps


def test_demo_plan_weighs_pretraining_by_its_size() -> None:
    from transfer_laws.plugin.sweeps import DemoArgs as Args
    from transfer_laws.plugin.sweeps.demo import plan_compute

    args = Args()
    plan = plan_compute(args)
    per_size = 1 + len(args.d_f_tokens) + len(args.scratch_tokens)
    assert len(plan) == per_size * len(args.sizes)
    pretrain = plan[::per_size]
    assert pretrain == sorted(pretrain) and pretrain[-1] > 50 * pretrain[0]  # 2x64 for 1950 steps vs 1x32 for 250


def test_a_standalone_run_says_what_its_refit_did() -> None:
    from types import SimpleNamespace

    from transfer_laws.plugin.recipes import outcome_lines

    fit = SimpleNamespace(alpha=0.6123, beta=0.5234, intervals={"alpha": (-0.07, 1.04), "beta": (-0.38, 1.03)},
                          warnings=["beta's interval includes 0"])
    registered = SimpleNamespace(law="text-to-python", status="registered", version="4", fit=fit, n_runs=12,
                                 reason=None)
    unchanged = SimpleNamespace(law="text-to-python", status="unchanged", version="4", fit=None, n_runs=12,
                                reason=None)
    out = (outcome_lines(SimpleNamespace(refit=[registered]), "sqlite:///x.db", "scratch run r1")
           + outcome_lines(SimpleNamespace(refit=[unchanged]), "sqlite:///x.db", "scratch run r2"))
    assert out[0] == "scratch run r1"
    assert out[1] == ("refit text-to-python: registered version 4 from 12 runs: alpha = 0.612 [-0.070, 1.040], "
                      "beta = 0.523 [-0.380, 1.030]")
    assert out[2] == "  fit warning: beta's interval includes 0"
    assert out[4] == "refit text-to-python: no new version: same inputs as version 4"
    alone = outcome_lines(SimpleNamespace(refit=[]), "sqlite:///x.db", "scratch run r3")
    assert alone[1].startswith("refit: no law to refit yet")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_on_a_busy_port_fails_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = cli.main(["serve", "--port", str(port)])
    err = capsys.readouterr().err
    assert code != 0
    assert f"cannot listen on 127.0.0.1:{port}" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["serve", "--port", "70000"]) == 2
    assert capsys.readouterr().err.strip() == "transfer-laws serve: error: --port must be 1..65535, got 70000"


@pytest.mark.slow
def test_serve_says_ready_only_when_it_answers(tmp_path: Path) -> None:
    port = _free_port()
    env = {"TRANSFER_LAWS_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    server = subprocess.Popen([sys.executable, "-m", "transfer_laws.scripts.cli", "serve", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        first = server.stdout.readline()
        assert first.startswith("starting MLflow") and "ready" not in first
        ready = server.stdout.readline()  # blocks until the command prints its next line
        assert ready.startswith(f"ready: http://127.0.0.1:{port}/"), ready
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            assert response.status == 200  # it said ready, and it answers
    finally:
        server.terminate()
        deadline = time.monotonic() + 60
        while server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0  # a SIGTERM'd server is a clean stop


@pytest.mark.slow
def test_a_terminated_training_run_exits_143_and_is_marked_failed(tmp_path: Path) -> None:
    """Lightning turns SIGTERM into a SystemExit without a code (exit 0): the CLI must not report success."""
    import json
    import os
    import signal

    from mlflow import MlflowClient

    corpus = tmp_path / "code"
    corpus.mkdir()
    for module in (json, textwrap, socket):
        (corpus / Path(module.__file__).name).write_text(Path(module.__file__).read_text())
    home = tmp_path / "home"
    uri = f"sqlite:///{home / 'mlflow.db'}"
    env = {**os.environ, "TRANSFER_LAWS_HOME": str(home), "MLFLOW_TRACKING_URI": uri}
    proc = subprocess.Popen([sys.executable, "-m", "transfer_laws.scripts.cli", "pretrain", "--corpus", str(corpus),
                             "--tokenizer-corpus", str(corpus), "--vocab-size", "300", "--tokens", "20000",
                             "--test-tokens", "256", "--batch-size", "2", "--context-length", "32",
                             "--train.max-steps", "100000", "--train.max-time-s", "600", "--register-as", "",
                             # no early stop before the signal arrives: it must interrupt training
                             "--train.eval-every-steps", "100000", "--train.patience", "1000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = proc.stderr.readline()  # the first progress line: training is under way
        assert first.startswith("[train] step"), first
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, (proc.returncode, err[-2000:])
    assert "terminated (SIGTERM)" in err
    runs = MlflowClient(uri).search_runs([e.experiment_id for e in MlflowClient(uri).search_experiments()])
    assert [r.info.status for r in runs] == ["FAILED"]
