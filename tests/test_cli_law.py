"""The command line on a store with a fitted law and a checkpoint with fine-tunes (synthetic runs, no training):
predict warns outside the fitted range and repeats the fit's caveats, refit --json is one document CI can gate on,
lineage prints a tree from an alias, a name or a run id, and every invalid value is one line and exit 2."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from transfer_laws.scripts import cli

LAW = "text-to-python"
FLAT_LAW = "code-to-python"
BENT_LAW = "bent-to-python"
"""Fine-tunes whose D_T bends down past D_F ~ 3e5 (a law that holds only in a low-data regime)."""
CHECKPOINT = "pretrained-text"
BENT_SPLIT = 3_000_000
"""The train split the bent law's fine-tunes log: its largest fine-tune uses all of it."""


@dataclass(frozen=True)
class Store:
    uri: str
    pretrain_run: str
    finetunes: list[str]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """Scratch curves and fine-tunes of a known law, one fitted version, and a checkpoint version with fine-tunes."""
    from law_runs import ALPHA, BETA, K, finetune_grid, land_finetunes, land_run, land_scratch_runs, scratch_loss
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    from transfer_laws.registry.refit import refit_law
    from transfer_laws.registry.schema import METRIC_BEST_TEST_LOSS, TAG_PARENT, TAG_ROLE
    from transfer_laws.registry.tracking import ensure_experiment

    home = tmp_path_factory.mktemp("cli-law-home")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRANSFER_LAWS_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        client = MlflowClient(uri, registry_uri=uri)
        experiment = ensure_experiment("transfer-laws", uri)
        land_scratch_runs(client, experiment)
        land_finetunes(client, experiment, 12)
        assert refit_law(LAW, tracking_uri=uri, bootstrap=100, plots=False).status == "registered"
        # A second law on the same scratch curves whose fine-tunes gain nothing from size (beta = 0, with 0.2%
        # deterministic noise): its beta interval includes 0, so the evidence gate must trip.
        for i, (n, d_f) in enumerate(finetune_grid(12)):
            loss = scratch_loss(n, d_f + K * d_f**ALPHA) * (1 + 0.002 * math.sin(7 * i))
            land_run(client, experiment, "finetune", n, d_f, loss, law=FLAT_LAW)
            bent = scratch_loss(n, d_f + K * d_f**ALPHA * n**BETA * (1 + d_f / 3e5) ** -0.5)
            land_run(client, experiment, "finetune", n, d_f, bent * (1 + 0.002 * math.sin(7 * i)), law=BENT_LAW,
                     split_tokens=BENT_SPLIT)
        assert refit_law(BENT_LAW, tracking_uri=uri, bootstrap=100, plots=False).status == "registered"

        pretrain = client.create_run(experiment).info.run_id
        client.log_batch(pretrain, metrics=[Metric(METRIC_BEST_TEST_LOSS, 3.25, 0, 0)],
                         tags=[RunTag(TAG_ROLE, "pretrain")])
        client.set_terminated(pretrain)
        client.create_registered_model(CHECKPOINT)
        mv = client.create_model_version(CHECKPOINT, source=f"runs:/{pretrain}/checkpoint", run_id=pretrain,
                                         tags={"N": "25344", "tokens_seen": "512000", "corpus": "text"})
        client.set_registered_model_alias(CHECKPOINT, "champion", mv.version)
        finetunes = []
        for d_f, loss in ((1000, 4.5), (2500, 4.25)):
            run_id = client.create_run(experiment).info.run_id
            client.log_batch(run_id, metrics=[Metric(METRIC_BEST_TEST_LOSS, loss, 0, 0)],
                             params=[Param("N", "25344"), Param("D_F_tokens", str(d_f))],
                             tags=[RunTag(TAG_ROLE, "finetune"), RunTag(TAG_PARENT, f"models:/{CHECKPOINT}/1")])
            client.set_terminated(run_id)
            finetunes.append(run_id)
        yield Store(uri=uri, pretrain_run=pretrain, finetunes=finetunes)


def _cli(store: Store, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main([*argv, "--tracking-uri", store.uri])
    except SystemExit as exc:  # argparse's own errors (a value its type function refused) exit from parse_args
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- predict ----------------------------------------------------------------------------------------------------

def test_predict_flags_queries_outside_the_fitted_range_and_repeats_the_verdict(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _cli(store, capsys, "predict", "--law", LAW, "--n", "1e10", "--d-f", "1e6")
    assert code == 0
    # The synthetic grid spans N 1e5..1e7: 1e10 is 3 decades above it.
    assert re.search(r"WARNING: N=1e\+10 is 3\.0 decades above the fitted range", out), out
    assert "D_F=1e+06 is" not in out  # inside the fitted D_F range: no warning
    assert "verdict:" in out
    assert re.search(r"d_t: \S+\s+\[\S+, \S+\]", out)  # every quantity with its interval
    assert re.search(r"loss: \S+\s+\[\S+, \S+\]  \(prediction interval\)", out)  # and says which kind


def test_predict_json_is_strict_and_carries_the_caveats(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(store, capsys, "predict", "--n", "1e6", "--d-f", "3e7", "--json")
    assert code == 0
    answer = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert [f["quantity"] for f in answer["outside_fitted_range"]] == ["D_F"]
    assert answer["outside_fitted_range"][0]["decades"] == pytest.approx(1.0, abs=0.01)
    assert isinstance(answer["warnings"], list) and isinstance(answer["verdict"], list)
    assert set(answer["intervals"]) >= {"k", "alpha", "beta"}


def test_target_loss_has_an_interval_and_an_unreachable_target_is_an_error(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    from law_runs import finetune_loss

    reachable = finetune_loss(1e6, 1e6)  # what a fine-tune at N=1e6, D_F=1e6 reached
    code, out, _ = _cli(store, capsys, "predict", "--n", "1e6", "--target-loss", f"{reachable}", "--json")
    assert code == 0
    needed = json.loads(out)["d_f_for_target_loss"]
    assert needed["low"] <= needed["value"] <= needed["high"]
    assert needed["value"] == pytest.approx(1e6, rel=0.5)

    code, out, err = _cli(store, capsys, "predict", "--n", "1e6", "--target-loss", "0.01")
    assert code == 3 and out == ""
    assert len(err.strip().splitlines()) == 1 and "0.01" in err


def test_target_loss_answers_stay_physical(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """A loss under the scratch model's floor at that N is out of reach (3); one the law puts at under one token of
    D_F is refused, not answered with 0.0004 tokens (3); an N needed is named by the preset shapes around it."""
    from law_runs import finetune_loss

    code, _, err = _cli(store, capsys, "predict", "--n", "1e6", "--target-loss", "1.2")
    assert code == 3 and "floor" in err and "at N=1e+06" in err
    easy = finetune_loss(1e6, 1e-4)  # the law's loss at a ten-thousandth of a token
    code, out, err = _cli(store, capsys, "predict", "--n", "1e6", "--target-loss", f"{easy}")
    assert code == 3 and out == "" and "under one" in err, err
    code, out, err = _cli(store, capsys, "predict", "--d-f", "1e6", "--target-loss", f"{finetune_loss(1e6, 1e6)}")
    assert code == 0, err
    line = next(x for x in out.splitlines() if "nearest preset shapes" in x)
    presets = re.findall(r"--preset (\S+) \(N=([\d,]+)\)", line)
    needed = float(re.search(r"N needed at D_F=1e\+06: (\S+)", out).group(1))
    assert len(presets) == 2 and int(presets[0][1].replace(",", "")) <= needed < int(presets[1][1].replace(",", ""))


def test_next_is_a_readable_table(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(store, capsys, "predict", "--next")
    assert code == 0
    table = out[out.index("next runs"):].splitlines()[1:]
    assert table[0].split()[:3] == ["#", "kind", "size"] and "cost" in table[0] and "why" in table[0]
    assert len(table) >= 3
    assert not re.search(r"\d{7,}", "\n".join(table)), "raw long floats in the table"
    assert all("narrower" in row or "no " in row for row in table[1:])


def test_next_offers_no_run_larger_than_the_train_split(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """The bent law's runs log a 3M-token train split: a fine-tune or scratch run needing more is not advised, and
    the table says how many were left out; a law whose runs log no split is not filtered."""
    code, out, _ = _cli(store, capsys, "predict", "--law", BENT_LAW, "--next", "--json")
    assert code == 0
    answer = json.loads(out)
    assert answer["train_split"]["tokens"] == BENT_SPLIT and answer["train_split"]["candidates_too_large"] > 0
    assert answer["next"] and all(row["D_F_tokens"] <= BENT_SPLIT for row in answer["next"])
    code, out, _ = _cli(store, capsys, "predict", "--law", BENT_LAW, "--next")
    left_out = answer["train_split"]["candidates_too_large"]
    assert (f"({left_out} candidate run(s) would need more than the 3,000,000 tokens of the target's train split, "
            "and are not offered)") in out
    code, out, _ = _cli(store, capsys, "predict", "--next", "--json")
    assert json.loads(out)["train_split"] == {"tokens": None, "candidates_too_large": 0}


# -- invalid input: one line, exit 2, before any work -------------------------------------------------------------

@pytest.mark.parametrize("argv, expected", [
    (["predict", "--n", "abc", "--d-f", "1"], "'abc' is not a number"),
    (["predict", "--n", "-1", "--d-f", "1"], "--n must be"),
    (["predict", "--n", "0", "--d-f", "1"], "--n must be"),
    (["predict", "--n", "nan", "--d-f", "1"], "not a finite number"),
    (["predict", "--n", "inf", "--d-f", "1"], "not a finite number"),
    (["predict", "--n", "1e6", "--d-f", "-5"], "--d-f must be"),
    (["predict", "--n", "1e6", "--target-loss", "-1"], "--target-loss must be"),
    (["predict", "--n", "1e6"], "--n needs --d-f"),
    (["predict", "--law", "text-to-pyhton", "--n", "1", "--d-f", "1"], "did you mean 'text-to-python'"),
    (["predict", "--law", "python", "--n", "1", "--d-f", "1"], "<source>-to-<target>"),
    (["predict", "--n", "1e6", "--d-f", "1e5", "--version", "99"], "has no version '99'; its versions are 1"),
    (["lineage"], "missing required argument --target"),
    (["lineage", "models:/pretrained-text@nope"], "pretrained-text has aliases @champion (v1) and versions 1"),
    (["lineage", "models:/nope@champion"], "no registered model 'nope'"),
    (["refit", "--law", "text-to-pyhton"], "did you mean 'text-to-python'"),
    (["report", "--law", "text-to-pyhton"], "did you mean 'text-to-python'"),
    (["predict", "--n", "1e6", "--target-loss", "9"], "ln V = ln 2,048 = 7.625"),
    (["predict", "--n", "1e6", "--d-f", "0.5"], "--d-f 0.5 is under one token"),
    (["finetune", "--from", "models:/pretrained-text@nope", "--d-f-tokens", "100"],
     "pretrained-text has aliases @champion (v1)"),
    (["lineage", "--target", "models:/nope/1"], "models:/nope/1"),
    (["lineage", "--target", "no-such-model"], "no-such-model"),
    (["refit", "--fail-if-beta-moves", "-0.1"], "--fail-if-beta-moves must be"),
    (["finetune", "--from", "nope", "--d-f-tokens", "100"], "--from: 'nope' is not a checkpoint URI"),
    (["finetune", "--from", "models:/pretrained-text@champion", "--d-f-tokens", "0"], "--d-f-tokens must be"),
])
def test_invalid_values_are_one_line_and_exit_2(
    store: Store, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    code, out, err = _cli(store, capsys, *argv)
    assert code == 2, err
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err
    assert "<lambda>" not in err and "Traceback" not in err and "__init__" not in err
    assert "refit --law text-to-pyhton" not in err  # never advice to refit a typo


def test_scratch_rejects_a_negative_budget_before_any_work(
    sqlite_uri: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from transfer_laws.plugin.recipes import workspace

    def no_work(*_: object, **__: object) -> None:
        pytest.fail("corpus or tokenizer built for an invalid run")

    monkeypatch.setattr(workspace, "corpus_dir", no_work)
    monkeypatch.setattr(workspace, "tokenizer_dir", no_work)
    assert cli.main(["scratch", "--d-f-tokens", "-5"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "transfer-laws scratch: error: --d-f-tokens must be a finite number > 0, got -5"


# -- refit --json -------------------------------------------------------------------------------------------------

def test_refit_json_is_one_document_with_the_evidence_and_gates_on_it(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _cli(store, capsys, "refit", "--json", "--bootstrap", "50")
    assert code == 0
    doc = json.loads(out)  # the whole of stdout is one document
    assert doc["schema"] >= 2 and doc["exit_code"] == 0 and doc["status"] in ("registered", "unchanged")
    for key in ("intervals", "verdict", "warnings", "excluded", "checks", "points_used", "evidence", "drift"):
        assert key in doc, key
    low, high = doc["intervals"]["beta"]
    assert low <= doc["beta"] <= high

    # The warnings gate trips exactly when the fit warns (the beta gate has its own test below).
    code, out, err = _cli(store, capsys, "refit", "--json", "--bootstrap", "50", "--fail-on-warnings")
    doc = json.loads(out)
    assert code == doc["exit_code"] == (5 if doc["warnings"] else 0)
    assert bool(doc["evidence"]) == bool(doc["warnings"])


def test_the_evidence_gate_trips_when_beta_is_not_shown(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(store, capsys, "refit", "--law", FLAT_LAW, "--json", "--bootstrap", "100",
                          "--fail-if-beta-interval-includes-0")
    doc = json.loads(out)
    low, high = doc["intervals"]["beta"]
    assert low <= 0 <= high, doc["intervals"]
    assert code == doc["exit_code"] == 5
    assert doc["evidence"] == [f"beta's 95% interval [{low:.4g}, {high:.4g}] includes 0"]
    assert "evidence gate: beta's 95% interval" in err
    code, out, _ = _cli(store, capsys, "refit", "--law", FLAT_LAW, "--json", "--bootstrap", "100")
    assert code == json.loads(out)["exit_code"] == 0  # the same law without the gate: unchanged, fine


def test_the_law_misfit_gate_trips_when_the_law_bends(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(store, capsys, "refit", "--law", BENT_LAW, "--json", "--bootstrap", "50",
                        "--fail-if-law-misfit")
    doc = json.loads(out)
    assert code == doc["exit_code"] == 6
    assert doc["misfit"] and "past the low-data regime" in doc["misfit"][0]
    bends = [row for row in doc["law_holds"] if row["bends_above"] is not None]
    assert bends and all(row["d_f_high"] < row["bends_above"] for row in bends)
    assert any(e["reason"].startswith("past the low-data regime") for e in doc["excluded"])
    assert set(doc["lack_of_fit"]["p"]) <= {"D_F (pooled)", "D_F (per N)", "N"}
    code, out, err = _cli(store, capsys, "refit", "--law", BENT_LAW, "--fail-if-law-misfit", "--bootstrap", "50")
    assert code == 6 and "law-misfit gate: " in err
    # The straight law passes the same gate, and without the gate the bent one is exit 0.
    code, out, _ = _cli(store, capsys, "refit", "--json", "--bootstrap", "50", "--fail-if-law-misfit")
    assert code == json.loads(out)["exit_code"] == 0 and json.loads(out)["misfit"] == []
    assert _cli(store, capsys, "refit", "--law", BENT_LAW, "--bootstrap", "50")[0] == 0


def test_predict_warns_past_the_low_data_regime(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(store, capsys, "predict", "--law", BENT_LAW, "--n", "1e6", "--d-f", "3e6")
    assert code == 0
    assert "WARNING: D_F=3e+06 is past the low-data regime at N=1e+06" in out
    code, out, _ = _cli(store, capsys, "predict", "--law", BENT_LAW, "--n", "1e6", "--d-f", "3e6", "--json")
    past = json.loads(out)["past_low_data_regime"]
    assert past["bends_above"] == pytest.approx(3e6) and past["d_f_high"] == pytest.approx(1e6)
    code, out, _ = _cli(store, capsys, "predict", "--law", BENT_LAW, "--n", "1e6", "--d-f", "3e5", "--json")
    assert json.loads(out)["past_low_data_regime"] is None


def test_refit_never_prints_a_password(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["refit", "--json", "--tracking-uri", "http://ci:hunter2@127.0.0.1:9/"])
    captured = capsys.readouterr()
    assert code == 2
    assert "hunter2" not in captured.out + captured.err
    assert json.loads(captured.out)["status"] == "bad_input"


def test_refit_on_a_broken_store_is_exit_1_with_a_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "mlflow.db"
    broken.write_bytes(b"not a database, " * 400)  # what a truncated copy or a wrong path leaves behind
    code = cli.main(["refit", "--json", "--tracking-uri", f"sqlite:///{broken}"])
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert code == doc["exit_code"] == 1 and doc["status"] == "error"
    assert "not a database" in doc["reason"] and "\n" not in doc["reason"]
    assert len(captured.err.strip().splitlines()) == 1


def test_refit_json_stdout_is_clean_in_a_real_process(store: Store) -> None:
    """In a subprocess nothing else (MLflow's "View run", progress bars, warnings) reaches stdout or stderr's
    normal output."""
    import subprocess
    import sys

    from law_runs import finetune_loss, land_run
    from mlflow import MlflowClient

    client = MlflowClient(store.uri)
    experiment = client.get_experiment_by_name("transfer-laws").experiment_id
    land_run(client, experiment, "finetune", 1e6, 2e6, finetune_loss(1e6, 2e6))  # new inputs: a version is logged
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.uri}
    proc = subprocess.run([sys.executable, "-m", "transfer_laws.scripts.cli", "refit", "--json", "--bootstrap", "30"],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "registered"
    for noise in ("Failed to infer model signature", "Downloading artifacts", "litlogger", "View run"):
        assert noise not in proc.stdout + proc.stderr


# -- lineage --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["models:/pretrained-text@champion", "models:/pretrained-text/1",
                                    "pretrained-text", "pretrain-run"])
@pytest.mark.parametrize("flag", [(), ("--target",)], ids=["as-documented", "flag"])
def test_lineage_prints_a_tree_from_an_alias_a_name_or_a_run(
    store: Store, capsys: pytest.CaptureFixture[str], target: str, flag: tuple[str, ...]
) -> None:
    target = store.pretrain_run if target == "pretrain-run" else target
    code, out, err = _cli(store, capsys, "lineage", *flag, target)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("models:/pretrained-text/1 @champion") and "N=25,344" in lines[0]
    assert "best loss 3.2500" in lines[0]
    assert [line.split()[0] for line in lines[1:]] == ["├──", "└──"]
    assert "D_F=1,000" in lines[1] and "best loss 4.5000" in lines[1] and store.finetunes[0] in lines[1]
    assert "D_F=2,500" in lines[2]


def test_lineage_of_a_fine_tune_walks_back(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(store, capsys, "lineage", "--target", store.finetunes[1])
    assert code == 0
    assert "D_F=2,500" in out.splitlines()[0]
    assert "started from models:/pretrained-text/1" in out
    assert f"pretraining run {store.pretrain_run}  best loss 3.2500" in out


# -- read-only commands write nothing --------------------------------------------------------------------------------

def _tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the sha256 of its bytes."""
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_read_only_commands_leave_the_store_and_tmp_as_they_were(
    store: Store, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """predict, report (its output goes elsewhere), lineage and loading the law model (integer D_F too) change no
    byte of the store and leave no temporary folder."""
    import tempfile

    import mlflow
    import pandas as pd

    home = Path(store.uri.removeprefix("sqlite:///")).parent
    scratch_tmp = tmp_path / "tmp"
    scratch_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch_tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile caches its folder: make it read TMPDIR again
    before = _tree(home)
    for argv in (["predict", "--n", "1e6", "--d-f", "1e6"], ["predict", "--n", "1e6", "--target-loss", "4.5"],
                 ["report", "--out", str(tmp_path / "report")], ["lineage", "models:/pretrained-text@champion"]):
        code, _, err = _cli(store, capsys, *argv)
        assert code == 0, (argv, err)
    mlflow.set_tracking_uri(store.uri)
    mlflow.set_registry_uri(store.uri)
    model = mlflow.pyfunc.load_model(f"models:/transfer-law-{LAW}@latest")
    as_ints = model.predict(pd.DataFrame({"N": [1_000_000], "D_F": [30_000]}))
    as_floats = model.predict(pd.DataFrame({"N": [1e6], "D_F": [3e4]}))
    assert as_floats["D_T"].iloc[0] > 0
    assert as_ints["D_T"].iloc[0] == pytest.approx(as_floats["D_T"].iloc[0])
    # (MLflow's load writes registered_model_meta into a local store's model folder; registering wrote those bytes)
    assert _tree(home) == before, "a read-only command changed the store"
    assert list(scratch_tmp.iterdir()) == [], "a temporary folder was left behind"


@pytest.mark.parametrize("command", [["predict", "--n", "1e6", "--d-f", "1e6"], ["lineage", "pretrained-text"],
                                     ["report"]])
def test_a_read_only_command_on_a_missing_store_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    missing = tmp_path / "not" / "there"
    code = cli.main([*command, "--tracking-uri", f"sqlite:///{missing / 'mlflow.db'}"])
    err = capsys.readouterr().err
    assert code == 2 and "no MLflow store at" in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == [], "the store's folder was created"
