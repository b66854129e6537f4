"""`transfer-laws sweep --tune-lr` on real tiny training: a clearly bad learning rate is pruned (its run marked, the
sweep going on), the grid trains at the tuned value and says so, and a resumed sweep redoes no tuning trial."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from transfer_laws.plugin.sweeps import (
    ATTR_PARENT_RUN,
    ATTR_RUN_ID,
    TAG_PARENT_RUN,
    LrTuning,
    default_storage,
    open_study,
)
from transfer_laws.plugin.sweeps.lr_tune import ATTR_PRUNED, TuneTarget, study_name, tune_target
from transfer_laws.registry.schema import (
    PARAM_LR,
    PARAM_N,
    TAG_LAW,
    TAG_LR_SOURCE,
    TAG_LR_TUNING,
    TAG_PRUNED,
    TAG_ROLE,
    TAG_SWEEP,
    TAG_TRIAL,
)

GOOD_LR, BAD_LR = 0.01, 1e-6


def test_tuning_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="below high"):
        LrTuning(low=1e-2, high=1e-3)
    with pytest.raises(ValueError, match=">= 1"):
        LrTuning(trials=0)
    with pytest.raises(ValueError, match="outside"):
        LrTuning(low=1e-4, high=1e-2, first=[0.1])
    with pytest.raises(ValueError, match="min-evals"):
        LrTuning(min_evals=0)


class Lrs:
    """A tuning trainer without training (the real one runs in the CLI test below): loss is the distance of log10(lr)
    from -3, and learning rates below ``prune_below`` are pruned."""

    def __init__(self, prune_below: float = 0.0) -> None:
        self.tried: list[float] = []
        self.prune_below = prune_below

    def __call__(self, target: TuneTarget, lr: float, trial: optuna.Trial) -> float:
        self.tried.append(lr)
        if lr < self.prune_below:
            trial.set_user_attr(ATTR_PRUNED, f"lr {lr:g} too low")
            raise optuna.TrialPruned()
        return abs(math.log10(lr) + 3)


def test_tuning_resumes_by_counting_finished_trials_and_refuses_when_all_were_pruned(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    opener = partial(open_study, storage=storage)
    target = TuneTarget("1x32", "scratch")
    first = Lrs()
    chosen = tune_target(opener, "s", target, LrTuning(trials=3, first=[1e-3]), first)
    assert len(first.tried) == 3 and chosen.lr == 1e-3 and chosen.complete == 3
    again = Lrs()
    assert tune_target(opener, "s", target, LrTuning(trials=3, first=[1e-3]), again) == chosen
    assert again.tried == []  # finished trials are not redone
    more = Lrs()
    tune_target(opener, "s", target, LrTuning(trials=4, first=[1e-3]), more)
    assert len(more.tried) == 1
    with pytest.raises(ValueError, match="no trial finished.*too low"):
        tune_target(opener, "t", target, LrTuning(trials=2, low=1e-4, high=1e-3), Lrs(prune_below=1.0))


def test_bad_lr_is_pruned_the_grid_uses_the_best_and_resume_redoes_nothing(sqlite_uri: str) -> None:
    from mlflow import MlflowClient

    from transfer_laws.scripts import cli

    study = "tune"
    argv = ["sweep", "--roles", "scratch", "--sizes", "1x32", "--d-f-tokens", "1000,2000", "--study", study,
            "--tune-lr", "--tuning.trials", "2", "--tuning.first", f"{GOOD_LR},{BAD_LR}",
            "--tuning.low", "1e-6", "--tuning.high", "0.03", "--tuning.max-steps", "12",
            "--tuning.eval-every-steps", "4", "--tuning.startup-trials", "1", "--tuning.min-evals", "1",
            "--refit-bootstrap", "20", "--refit-plots", "false",
            "--corpus-max-mb", "0.5", "--tokenizer-max-mb", "0.5", "--vocab-size", "300", "--test-tokens", "2048",
            "--train.max-steps", "12", "--progress-bar", "false"]
    assert cli.main(argv) == 0

    tuning = optuna.load_study(study_name=study_name(study, TuneTarget("1x32", "scratch")), storage=default_storage())
    trials = {t.params["lr"]: t for t in tuning.get_trials()}
    assert set(trials) == {GOOD_LR, BAD_LR}
    assert trials[GOOD_LR].state == TrialState.COMPLETE
    bad = trials[BAD_LR]
    assert bad.state == TrialState.PRUNED and bad.user_attrs[ATTR_PRUNED].startswith("pruned at step 4")
    assert bad.intermediate_values[4] > trials[GOOD_LR].intermediate_values[4]
    assert set(bad.intermediate_values) == {4}  # the pruned run stopped at once, it did not train on

    client = MlflowClient(sqlite_uri)
    experiment = client.get_experiment_by_name("transfer-laws").experiment_id
    parent = optuna.load_study(study_name=study, storage=default_storage()).user_attrs[ATTR_PARENT_RUN]
    tuning_runs = client.search_runs([experiment], f"tags.`{TAG_LR_TUNING}` = '1x32/scratch'")
    assert len(tuning_runs) == 2
    pruned_run = client.get_run(bad.user_attrs[ATTR_RUN_ID])
    assert pruned_run.info.status == "KILLED" and pruned_run.data.tags[TAG_PRUNED] == bad.user_attrs[ATTR_PRUNED]
    assert client.get_run(trials[GOOD_LR].user_attrs[ATTR_RUN_ID]).info.status == "FINISHED"
    for r in tuning_runs:  # no law ever reads a tuning run
        assert TAG_ROLE not in r.data.tags and TAG_LAW not in r.data.tags and r.data.tags[TAG_PARENT_RUN] == parent
        assert int(r.data.params[PARAM_N]) > 0  # written by the run's facts, as on every run (train_run)
        assert float(r.data.params[PARAM_LR]) in (GOOD_LR, BAD_LR)
        assert float(r.data.params["optim.lr"]) == float(r.data.params[PARAM_LR])  # every setting, as on all runs
        assert "D_tokens" in r.data.params and "D_F_tokens" not in r.data.params  # scratch data is not D_F
        assert "config.yaml" in {a.path for a in client.list_artifacts(r.info.run_id)}

    grid = client.search_runs([experiment], f"tags.`{TAG_SWEEP}` = '{study}' and tags.`{TAG_ROLE}` = 'scratch'")
    assert len(grid) == 2
    main_study = optuna.load_study(study_name=study, storage=default_storage())
    trial_of_run = {t.user_attrs[ATTR_RUN_ID]: t.number for t in main_study.get_trials()}
    for r in grid:  # the sweep's tags travel in the run's facts
        assert r.data.tags[TAG_PARENT_RUN] == parent and r.data.tags[TAG_TRIAL] == str(trial_of_run[r.info.run_id])
        assert float(r.data.params[PARAM_LR]) == GOOD_LR == float(r.data.params["optim.lr"])
        assert r.data.tags[TAG_LR_SOURCE].startswith("tuned:") and tuning.study_name in r.data.tags[TAG_LR_SOURCE]
    parent_tags = client.get_run(parent).data.tags
    assert float(parent_tags["transfer.lr.1x32.scratch"]) == GOOD_LR and "2 trials" in parent_tags[TAG_LR_TUNING]

    # Resume: the tuning trials and the grid are finished, so nothing trains again.
    before = {r.info.run_id for r in client.search_runs([experiment])}
    assert cli.main(argv) == 0
    assert {r.info.run_id for r in client.search_runs([experiment])} == before
    assert len(tuning.get_trials()) == 2


class _RacingClient:
    """A real client whose first set_tag loses the insert race: another worker's write lands, then MLflow's
    unique-key error arrives (a fault two processes cause only by chance, so it is staged here)."""

    def __init__(self, client: object, other_value: str) -> None:
        self.client, self.other_value, self.raced = client, other_value, False

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        from mlflow.exceptions import MlflowException

        if not self.raced:
            self.raced = True
            self.client.set_tag(run_id, key, self.other_value)
            raise MlflowException('(psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint '
                                  '"tag_pk"')
        self.client.set_tag(run_id, key, value)

    def get_run(self, run_id: str) -> object:
        return self.client.get_run(run_id)


@pytest.mark.parametrize("other_value", ["0.01", "0.02"])
def test_shared_tags_survive_a_lost_insert_race(sqlite_uri: str, other_value: str) -> None:
    from mlflow import MlflowClient

    from transfer_laws.plugin.sweeps.lr_tune import set_shared_tags

    client = MlflowClient(sqlite_uri)
    run_id = client.create_run(client.create_experiment(f"race-{other_value}")).info.run_id
    set_shared_tags(_RacingClient(client, other_value), run_id, {"transfer.lr.1x32.scratch": "0.01", "other": "x"})
    tags = client.get_run(run_id).data.tags
    assert tags["transfer.lr.1x32.scratch"] == "0.01" and tags["other"] == "x"
