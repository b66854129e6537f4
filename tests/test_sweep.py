"""`transfer-laws sweep`: grid enumeration, idempotent enqueue and resume, retry of a crashed trial, and two
worker processes sharing one study on the real PostgreSQL with real training landing in the real server."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from transfer_laws.plugin.sweeps import (
    ATTR_PARENT_RUN,
    ATTR_RUN_ID,
    TAG_PARENT_RUN,
    Cell,
    enqueue_cells,
    grid_cells,
    open_study,
    run_worker,
    sweep_progress,
)
from transfer_laws.plugin.sweeps import SweepArgs as Args
from transfer_laws.plugin.sweeps import run_sweep as run
from transfer_laws.plugin.sweeps.lr_tune import PARAM_LR, TuneTarget, best_of
from transfer_laws.plugin.sweeps.lr_tune import study_name as study_name_of
from transfer_laws.registry.schema import TAG_SWEEP, TAG_TRIAL

TINY = ["--corpus-max-mb", "0.5", "--tokenizer-max-mb", "0.5", "--vocab-size", "300", "--test-tokens", "2048",
        "--train.max-steps", "12", "--train.eval-every-steps", "4", "--progress-bar", "false"]


def test_grid_enumerates_every_cell_once_and_refuses_bad_input() -> None:
    cells = grid_cells(["2x32", "1x32", "2x32"], [1000, 4000], ["finetune", "scratch"])
    assert len(cells) == 8 == len(set(cells))
    assert cells[0] == Cell("2x32", 1000, "finetune") and cells[-1] == Cell("1x32", 4000, "scratch")
    with pytest.raises(ValueError, match="unknown size"):
        grid_cells(["9x9"], [1000], ["scratch"])
    with pytest.raises(ValueError, match="unknown role"):
        grid_cells(["1x32"], [1000], ["pretrain"])
    with pytest.raises(ValueError, match="positive"):
        grid_cells(["1x32"], [0], ["scratch"])


class Recorder:
    """A trainer that records which cells it ran (the real trainer is exercised by the PostgreSQL test)."""

    def __init__(self) -> None:
        self.cells: list[Cell] = []

    def __call__(self, cell: Cell, number: int) -> tuple[str, float]:
        self.cells.append(cell)
        return f"run-{number}", 1.0 / cell.d_f_tokens


def test_enqueue_is_idempotent_and_a_stopped_sweep_resumes_without_rerunning(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    cells = grid_cells(["1x32", "2x32"], [1000, 2000], ["scratch"])
    study = open_study("s", storage)
    assert enqueue_cells(study, cells) == 4
    assert enqueue_cells(study, cells) == 0
    first = Recorder()
    assert run_worker(study, first, max_trials=1, progress=False) == 1  # "stopped" after one run
    # Resume from a fresh handle, as a new process would; enqueueing the grid again adds nothing.
    study = open_study("s", storage)
    assert enqueue_cells(study, cells) == 0
    rest = Recorder()
    assert run_worker(study, rest, progress=False) == 3
    assert sorted(first.cells + rest.cells, key=str) == sorted(cells, key=str)
    assert sweep_progress(study) == (4, 4)
    assert enqueue_cells(study, cells) == 0 and run_worker(study, Recorder(), progress=False) == 0
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert {t.user_attrs[ATTR_RUN_ID] for t in done} == {f"run-{t.number}" for t in done}


def test_a_crashed_trial_is_retried_and_a_failed_one_is_not(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    cells = grid_cells(["1x32"], [1000, 2000, 3000], ["scratch"])
    study = open_study("r", storage, heartbeat_s=1, grace_s=2)
    enqueue_cells(study, cells)
    # A worker takes a cell, beats once and dies (no tell, no further heartbeats).
    crashed = study.ask()
    study._storage.record_heartbeat(crashed._trial_id)  # what Optuna's heartbeat thread does
    time.sleep(4.0)  # past the 2 s grace period with margin (heartbeat times are coarse)

    def trainer(cell: Cell, number: int) -> tuple[str, float]:
        if cell.d_f_tokens == 3000:
            raise RuntimeError("diverged")
        return f"run-{number}", 1.0

    assert run_worker(open_study("r", storage, heartbeat_s=1, grace_s=2), trainer, progress=False) == 3
    trials = study.get_trials()
    assert study._storage.get_trial(crashed._trial_id).state == TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == crashed.number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    by_state = Counter(t.state for t in trials)
    assert by_state[TrialState.COMPLETE] == 2 and by_state[TrialState.FAIL] == 2  # crashed + raised, no re-run
    assert sweep_progress(study) == (2, 3)


def test_worker_refuses_a_study_that_was_never_started(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="without --worker"):
        run(Args(worker=True, roles=["scratch"], sizes=["1x32"], d_f_tokens=[1000], study="nope",
                 storage=f"sqlite:///{tmp_path / 'o.db'}"))


def test_every_process_of_a_study_agrees_on_tune_lr(sqlite_uri: str, tmp_path: Path) -> None:
    common = dict(roles=["scratch"], sizes=["1x32"], d_f_tokens=[1000], study="agree",
                  storage=f"sqlite:///{tmp_path / 'o.db'}")
    assert run(Args(tune_lr=True, max_trials=0, **common)) == 0  # creates and enqueues; tuning is the workers'
    with pytest.raises(ValueError, match="started with --tune-lr"):
        run(Args(worker=True, **common))


def test_the_engine_says_its_lines_to_the_caller_and_prints_none(sqlite_uri: str, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Only the command line prints: the sweep hands its lines to ``say`` (quiet by default), in order."""
    said: list[str] = []
    common = dict(roles=["scratch"], sizes=["1x32"], d_f_tokens=[1000, 2000], study="say", max_trials=0,
                  storage=f"sqlite:///{tmp_path / 'o.db'}")
    assert run(Args(**common), say=said.append) == 0  # creates and enqueues, trains nothing
    parent = optuna.load_study(study_name="say", storage=common["storage"]).user_attrs[ATTR_PARENT_RUN]
    assert said == [f"sweep say: 2 cells, 2 newly enqueued; parent run {parent}",
                    "sweep say: this process ran 0 trial(s); 0/2 cells finished"]
    assert run(Args(**common)) == 0  # again, without say: nothing new is enqueued and nothing is printed
    assert capsys.readouterr().out == ""


def test_no_module_of_the_plugin_or_registry_writes_to_the_terminal() -> None:
    """``plugin/`` and ``registry/`` hand their lines to ``say`` or log them (``note``, ``warn``); writing to the
    terminal is ``scripts/``'s."""
    import ast

    root = Path(__file__).resolve().parents[1]
    writing = []
    for path in sorted([*(root / "plugin").rglob("*.py"), *(root / "registry").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                writing.append(f"{path.relative_to(root)}:{node.lineno} print")
            if (isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr")
                    and isinstance(node.value, ast.Name) and node.value.id == "sys"):
                writing.append(f"{path.relative_to(root)}:{node.lineno} sys.{node.attr}")
    assert writing == []


def test_progress_lines_reach_stderr_through_the_command_line_only(capsys: pytest.CaptureFixture[str],
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """A library caller gets ``note`` as a record below WARNING (Python's last resort stays quiet) and ``warn`` at
    WARNING; the command line shows each line once on stderr, also when main() runs inside main() (the sweep's
    trials), and leaves logging as found."""
    from transfer_laws.plugin.sweeps.say import PROGRESS, PROGRESS_LOGGER, note, warn
    from transfer_laws.scripts.cli import _hide_progress, _show_progress

    with caplog.at_level(PROGRESS, logger=PROGRESS_LOGGER):
        note("progress")
        warn("a failure")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(PROGRESS, "progress"),
                                                                     (logging.WARNING, "a failure")]
    assert logging.INFO < PROGRESS < logging.lastResort.level
    assert capsys.readouterr().err == ""
    outer = _show_progress()
    inner = _show_progress()
    note("sweep s: [###] 1/2 runs")
    _hide_progress(inner)
    warn("trial 3 failed")
    _hide_progress(outer)
    note("not shown")
    assert capsys.readouterr().err == "sweep s: [###] 1/2 runs\ntrial 3 failed\n"
    logger = logging.getLogger(PROGRESS_LOGGER)
    assert not any(type(h).__name__ == "_StderrLines" for h in logger.handlers) and logger.propagate


@pytest.mark.server
@pytest.mark.slow
def test_two_workers_share_one_postgres_study(server_stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    from transfer_laws.plugin.recipes import workspace
    from transfer_laws.scripts import cli

    home = tmp_path / "home"
    monkeypatch.setenv("TRANSFER_LAWS_HOME", str(home))
    study_name = f"two-workers-{tmp_path.name}"
    common = ["--roles", "scratch", "--sizes", "1x32", "--d-f-tokens", "1000,1500,2000,2500", "--study", study_name,
              "--storage", server_stack.pg_uri, "--tracking-uri", server_stack.tracking_uri,
              "--experiment", study_name, *TINY,
              # Both workers join the learning-rate tuning (the starting call below leaves it to them).
              "--tune-lr", "--tuning.trials", "2", "--tuning.first", "0.01", "--tuning.max-steps", "8",
              "--tuning.eval-every-steps", "4", "--tuning.min-evals", "1"]
    # Build the corpus and tokenizer once, so the two workers do not race to write them.
    workspace.corpus_dir("python", 500_000)
    workspace.tokenizer_dir("text", 300, 500_000)
    assert cli.main(["sweep", *common, "--max-trials", "0"]) == 0  # creates the study, enqueues, runs nothing
    env = {**os.environ, "TRANSFER_LAWS_HOME": str(home)}
    workers = [subprocess.Popen([sys.executable, "-m", "transfer_laws.scripts.cli", "sweep", "--worker", *common],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs

    study = optuna.load_study(study_name=study_name, storage=server_stack.pg_uri)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    cells = Counter(tuple(sorted(t.system_attrs["fixed_params"].items())) for t in complete)
    assert len(cells) == 4 and set(cells.values()) == {1}, cells
    client = MlflowClient(server_stack.tracking_uri)
    parent = study.user_attrs[ATTR_PARENT_RUN]
    for t in complete:
        mlflow_run = client.get_run(t.user_attrs[ATTR_RUN_ID])
        assert mlflow_run.info.status == "FINISHED"
        assert mlflow_run.data.tags[TAG_SWEEP] == study_name
        assert mlflow_run.data.tags[TAG_TRIAL] == str(t.number)
        assert mlflow_run.data.tags[TAG_PARENT_RUN] == parent
    assert client.get_run(parent).data.tags[TAG_SWEEP] == study_name

    tuning = optuna.load_study(study_name=study_name_of(study_name, TuneTarget("1x32", "scratch")),
                               storage=server_stack.pg_uri)
    finished = tuning.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert 2 <= len(finished) <= 3 and not tuning.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    chosen = best_of(tuning).lr  # both workers waited for the last tuning trial, then trained at its best
    assert {float(client.get_run(t.user_attrs[ATTR_RUN_ID]).data.params[PARAM_LR]) for t in complete} == {chosen}
    assert float(client.get_run(parent).data.tags["transfer.lr.1x32.scratch"]) == chosen


@pytest.mark.slow
def test_adaptive_sweep_through_the_cli_follows_the_advice_and_stops_at_its_budget(sqlite_uri: str) -> None:
    """Real tiny checkpoints and fine-tunes; the store already holds a (synthetic, noisy) law at the presets' N with
    the checkpoints' tokenizer, so the advice ranks from the first run and the test can check its choice."""
    import numpy as np
    from law_runs import finetune_loss, land_run, scratch_loss
    from mlflow import MlflowClient

    from transfer_laws.plugin.sweeps import default_storage
    from transfer_laws.plugin.sweeps.adaptive import ATTR_REASON, prior_results
    from transfer_laws.registry.fit import fit_transfer_law
    from transfer_laws.registry.fit.advice import rank_next_runs
    from transfer_laws.registry.next_runs import candidates_for, preset_n
    from transfer_laws.registry.schema import (
        CKPT_TAG_TOKENIZER_DIGEST,
        ROLE_FINETUNE,
        ROLE_SCRATCH,
        TAG_ADAPTIVE_REASON,
    )
    from transfer_laws.scripts import cli

    data = ["--corpus-max-mb", "0.5", "--tokenizer-max-mb", "0.5", "--vocab-size", "300", "--test-tokens", "2048",
            "--progress-bar", "false"]
    sizes = ["1x32", "2x32"]
    for size in sizes:
        assert cli.main(["pretrain", "--preset", size, "--tokens", "3000", "--train.max-steps", "2",
                         "--register-as", "pretrained-text", "--alias", f"demo-{size}", *data]) == 0
    client = MlflowClient(sqlite_uri)
    digest = client.get_model_version_by_alias("pretrained-text", "demo-1x32").tags[CKPT_TAG_TOKENIZER_DIGEST]
    prior_experiment = client.create_experiment("prior")
    noise = np.random.default_rng(0)
    for size in sizes:
        n = preset_n(size)
        for d in 10.0 ** np.arange(2.0, 8.01, 0.5):
            land_run(client, prior_experiment, ROLE_SCRATCH, n, d, scratch_loss(n, d), digest=digest)
        for d_f in (1e3, 3e3, 1e4):
            loss = finetune_loss(n, d_f) * (1 + 1e-3 * noise.standard_normal())
            land_run(client, prior_experiment, ROLE_FINETUNE, n, d_f, loss, digest=digest)

    argv = ["sweep", "--adaptive", "--roles", "finetune", "--sizes", ",".join(sizes), "--d-f-tokens", "1000,2000",
            "--study", "adapt", "--alpha-tolerance", "1e-9", "--refit-bootstrap", "20", "--refit-plots", "false",
            "--train.max-steps", "12",
            *data]
    args = cli.parse_namespace(Args, cli.build_parser(argv).parse_args(argv))
    cells = grid_cells(args.sizes, args.d_f_tokens, args.roles)
    prior = prior_results(args, cells, client)
    assert len(prior) == 2 * 13 + 2 * 3
    expected = rank_next_runs(fit_transfer_law(prior, bootstrap=200), candidates_for(cells, args.epochs))[0]

    assert cli.main([*argv, "--max-runs", "2"]) == 0
    study = optuna.load_study(study_name="adapt", storage=default_storage())
    done = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    assert len(done) == 2  # the budget, of a grid of four
    first = done[0].system_attrs["fixed_params"]
    assert (first["size"], first["d_f_tokens"]) == (expected.candidate.label, expected.candidate.d_f_tokens)
    parent = study.user_attrs[ATTR_PARENT_RUN]
    for t, remaining in zip(done, (4, 3), strict=True):
        reason = t.user_attrs[ATTR_REASON]
        assert reason.startswith(f"advice: rank 1 of {remaining} remaining"), reason
        tags = client.get_run(t.user_attrs[ATTR_RUN_ID]).data.tags
        assert tags[TAG_ADAPTIVE_REASON] == reason and tags[TAG_PARENT_RUN] == parent

    # Run again with the same budget: the finished cells count against it, nothing is trained.
    runs_before = len(client.search_runs([client.get_experiment_by_name("transfer-laws").experiment_id]))
    assert cli.main([*argv, "--max-runs", "2"]) == 0
    assert len(study.get_trials()) == 2
    assert len(client.search_runs([client.get_experiment_by_name("transfer-laws").experiment_id])) == runs_before
