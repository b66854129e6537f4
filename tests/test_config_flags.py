"""Every flag of every training command configures something, and building their parsers imports no torch.

Each flag is parsed with a distinctive value; the recipe then runs with its heavy steps (store, corpora, checkpoint,
training) replaced by recorders, and the test checks that the value reaches what the recipe would train with: the
``train_run`` call's configs, data settings and facts. A flag no recipe reads would fail here; flags that did
nothing before (pretrain's refit settings, finetune's tokenizer settings, sweep's run name) are rejected.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from transfer_laws.plugin.recipes.workspace import corpus_label
from transfer_laws.scripts import cli

TRAINING = ("pretrain", "finetune", "scratch", "sweep")


def test_training_parsers_import_no_torch() -> None:
    code = ("import json, sys\nfrom transfer_laws.scripts import cli\n"
            f"for c in {TRAINING!r} + ('demo',):\n    cli.build_parser([c, '--help'])\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                           text=True).stdout))
    assert not loaded & {"torch", "lightning", "pytorch_lightning", "optuna", "transformers"}, loaded


def test_model_and_data_settings_import_no_torch() -> None:
    """A shape, its N, a data config and the checkpoint registry's errors come from the torch-free config layer."""
    code = """
import json, sys
from transfer_laws.lightning_modules.config import DataConfig, GPTConfig, preset
from transfer_laws.lightning_modules import PRESETS, BudgetError, CheckpointError
from transfer_laws.registry.checkpoints import parse_model_uri

shape = GPTConfig.from_dict(preset("2x64", vocab_size=300).to_dict())
data = DataConfig(corpus_dir="c", tokenizer_dir="t", d_f_tokens=10)
try:
    parse_model_uri("runs:/x")
except CheckpointError as exc:
    error = type(exc).__name__
print(json.dumps({"n": shape.non_embedding_params(), "total": shape.total_params(), "presets": len(PRESETS),
                  "d_f": data.d_f_tokens, "budget": issubclass(BudgetError, ValueError), "error": error,
                  "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""
    out = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    assert not set(out["modules"]) & {"torch", "lightning", "pytorch_lightning", "safetensors"}, out["modules"]
    assert out["n"] == 12 * 2 * 64**2 + 13 * 2 * 64 + 2 * 64 == 100_096
    assert out["total"] == 100_096 + (300 + 128) * 64
    assert (out["presets"], out["d_f"], out["budget"], out["error"]) == (15, 10, True, "CheckpointError")


@pytest.mark.parametrize(("command", "flag"), [
    ("pretrain", "--refit-bootstrap"), ("pretrain", "--refit-plots"),
    ("finetune", "--vocab-size"), ("finetune", "--tokenizer-corpus"), ("finetune", "--tokenizer-max-mb"),
    ("sweep", "--run-name"),
])
def test_flags_that_configured_nothing_are_rejected(command: str, flag: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, flag, "1"])
    assert exit_.value.code == 2
    assert f"unrecognized arguments: {flag}" in capsys.readouterr().err


SPECIAL = {"optim__min_lr_ratio": "0.25", "tuning__low": "0.0002", "tuning__high": "0.05",
           "tuning__first": "0.001,0.002"}
"""Values that must lie in a range (a fraction, inside [low, high])."""


def _distinct_text(action: argparse.Action, index: int, default: Any) -> str:
    """A command-line value unlike the field's default (``index`` keeps the flags' values apart)."""
    metavar = action.metavar or ""
    if action.dest in SPECIAL:
        return SPECIAL[action.dest]
    if action.choices:
        return next(c for c in action.choices if c != default)
    if metavar == "BOOL":
        return "false" if default else "true"
    if metavar in ("INT", "INT|TEXT"):
        return str(101 + index)
    if metavar == "FLOAT":
        return str(0.5 + index)
    if metavar == "A,B,...":
        return f"{index + 1},{index + 2}"
    return f"text-{index}"


def _flags(command: str) -> dict[str, argparse.Action]:
    parser = cli.build_parser([command])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return {a.option_strings[0]: a for a in sub._actions
            if a.option_strings and a.dest not in ("help", "config", "verbose")}


def _parse(command: str, argv: list[str]) -> Any:
    full = [command, *argv]
    return cli.parse_namespace(cli._args_class(command), cli.build_parser(full).parse_args(full))


def _field(args: Any, dest: str) -> Any:
    value = args
    for part in dest.split("__"):
        value = getattr(value, part)
    return value


def _everything(command: str, required: dict[str, str]) -> tuple[Any, dict[str, Any]]:
    """Arguments with every flag set to a value unlike its default; returns them and {dest: value}."""
    needed = [x for kv in required.items() for x in kv]
    defaults = _parse(command, [*needed, *([] if "--d-f-tokens" in required or command == "pretrain"
                                           else ["--d-f-tokens", "1"])])
    argv: list[str] = []
    for index, (flag, action) in enumerate(_flags(command).items()):
        if action.dest in ("preset", "tokenizer_from", "parent") or flag in required:
            continue  # set by the caller or by their own tests: they name things the run opens
        argv += [flag, _distinct_text(action, index, _field(defaults, action.dest))]
    args = _parse(command, [*argv, *needed])
    values = {a.dest: _field(args, a.dest) for a in _flags(command).values()}
    for flag, action in _flags(command).items():  # every flag moved its field: the values really are distinct
        if action.dest not in ("preset", "tokenizer_from", "parent", "d_f_tokens") and flag not in required:
            assert values[action.dest] != _field(defaults, action.dest), f"{flag}: the test's value is the default"
    return args, values


class _Stop(Exception):
    """Raised by the recorded train_run: the test needs the call, not the training."""


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Replace the store, the workspace, checkpoints and training by recorders."""
    from transfer_laws.plugin import training
    from transfer_laws.plugin.recipes import workspace
    from transfer_laws.registry import checkpoints, tracking

    calls: dict[str, Any] = {"workspace": []}

    def train_run(**kwargs: Any) -> Any:
        calls["train_run"] = kwargs
        raise _Stop

    def corpus_dir(name: str, max_bytes: int | None) -> Path:
        calls["workspace"].append(("corpus", name, max_bytes))
        return tmp_path / "corpus"

    def tokenizer_dir(corpus: str, vocab: int, max_bytes: int | None) -> Path:
        calls["workspace"].append(("tokenizer", corpus, vocab, max_bytes))
        return tmp_path / "tokenizer"

    def use_tracking_uri(uri: str | None = None) -> str:
        calls["tracking_uri"] = uri
        return uri or "sqlite:///unused.db"

    loaded = SimpleNamespace(folder=tmp_path / "ckpt", name="pretrained-text", parent_uri="models:/pretrained-text/1",
                             model_id="m-1", pretrain_run_id="r-1", tokenizer_digest="d",
                             model=SimpleNamespace(config=SimpleNamespace(context_length=96)), extra={"source": "text"})
    monkeypatch.setattr(training, "train_run", train_run)
    monkeypatch.setattr(workspace, "corpus_dir", corpus_dir)
    monkeypatch.setattr(workspace, "tokenizer_dir", tokenizer_dir)
    monkeypatch.setattr(tracking, "use_tracking_uri", use_tracking_uri)
    monkeypatch.setattr(checkpoints, "load_checkpoint_uri", lambda uri, *a, **k: loaded)
    return calls


def _run(module: str, args: Any, calls: dict[str, Any]) -> dict[str, Any]:
    import importlib

    with pytest.raises(_Stop):
        importlib.import_module(f"transfer_laws.scripts.{module}").run(args)
    return calls["train_run"]


def _check_common(values: dict[str, Any], call: dict[str, Any], calls: dict[str, Any]) -> set[str]:
    """The flags every recipe shares: where each lands in the train_run call. Returns the dests checked."""
    data = call["data_config"]
    expected = {
        "tracking_uri": calls["tracking_uri"], "experiment": call["experiment"],
        "progress_bar": call["progress_bar"], "batch_size": data.batch_size, "test_tokens": data.test_tokens,
        "seed": data.seed, "evals_per_epoch": call["evals_per_epoch"],
    }
    for dest, reached in expected.items():
        assert reached == values[dest], f"--{dest}: {values[dest]!r} set, {reached!r} reached the run"
    assert call["tracking_uri"] == values["tracking_uri"]  # activated once, by the recipe, then passed on
    assert ("corpus", values.get("target", values.get("corpus")), int(values["corpus_max_mb"] * 1e6)) in \
        calls["workspace"]
    checked = set(expected) | {"corpus_max_mb"}
    for group in ("optim", "train"):
        config = call[group]
        for f in dataclasses.fields(config):
            assert getattr(config, f.name) == values[f"{group}__{f.name}"], f"--{group}.{f.name} did not arrive"
            checked.add(f"{group}__{f.name}")
    return checked


def _check_tokenizer(values: dict[str, Any], calls: dict[str, Any]) -> set[str]:
    assert ("tokenizer", values["tokenizer_corpus"], values["vocab_size"], int(values["tokenizer_max_mb"] * 1e6)) \
        in calls["workspace"]
    return {"tokenizer_corpus", "vocab_size", "tokenizer_max_mb"}


def _check_shape(values: dict[str, Any], call: dict[str, Any]) -> set[str]:
    model = call["model_config"]
    for name in ("n_layer", "n_head", "n_embd", "context_length"):
        assert getattr(model, name) == values[name], f"--{name.replace('_', '-')} did not shape the model"
    assert call["data_config"].context_length == values["context_length"]
    return {"n_layer", "n_head", "n_embd", "context_length", "preset"}


def _check_outcome_and_refit(values: dict[str, Any], call: dict[str, Any], args: Any) -> set[str]:
    """Read after training (printing) or by the refit that follows it."""
    assert args.print_outcome == values["print_outcome"]  # read after training: see test_cli's printed outcome
    checked = {"print_outcome", "run_name"}
    assert call["run_name"] == values["run_name"]
    if "refit_bootstrap" in values:
        assert (call["refit_bootstrap"], call["refit_plots"]) == (values["refit_bootstrap"], values["refit_plots"])
        checked |= {"refit_bootstrap", "refit_plots"}
    return checked


def _shaped_run(command: str, recorded: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], set[str]]:
    """A command that shapes its own model, run with every flag set: (flag values, train_run call, checked)."""
    # n_head must divide n_embd, and no preset may override the shape flags.
    args, values = _everything(command, {"--n-head": "2", "--n-embd": "16", "--tracking-uri": "sqlite:///x.db"})
    call = _run(command, args, recorded)
    checked = _check_common(values, call, recorded) | _check_tokenizer(values, recorded) | _check_shape(values, call)
    return values, call, checked | _check_outcome_and_refit(values, call, args)


def test_every_pretrain_flag_reaches_the_run(recorded: dict[str, Any]) -> None:
    values, call, checked = _shaped_run("pretrain", recorded)
    assert call["data_config"].d_f_tokens == values["tokens"]
    checked |= {"tokens", "corpus", "register_as", "alias"}  # register_as/alias: the registration after training
    assert set(values) <= checked, f"unchecked pretrain flags: {sorted(set(values) - checked)}"


def test_every_scratch_flag_reaches_the_run(recorded: dict[str, Any]) -> None:
    values, call, checked = _shaped_run("scratch", recorded)
    assert call["data_config"].d_f_tokens == values["d_f_tokens"]
    assert call["facts"].target == corpus_label(values["target"])
    checked |= {"d_f_tokens", "target", "tokenizer_from"}  # tokenizer_from: test below
    assert set(values) <= checked, f"unchecked scratch flags: {sorted(set(values) - checked)}"


def test_scratch_tokenizer_from_a_checkpoint_replaces_the_workspace_tokenizer(recorded: dict[str, Any]) -> None:
    args = _parse("scratch", ["--d-f-tokens", "100", "--tokenizer-from", "models:/pretrained-text@x"])
    call = _run("scratch", args, recorded)
    assert call["data_config"].tokenizer_dir.parent.name == "ckpt"
    assert not [w for w in recorded["workspace"] if w[0] == "tokenizer"]


def test_every_finetune_flag_reaches_the_run(recorded: dict[str, Any]) -> None:
    args, values = _everything("finetune", {"--from": "models:/pretrained-text@champion",
                                            "--tracking-uri": "sqlite:///f.db"})
    call = _run("finetune", args, recorded)
    checked = _check_common(values, call, recorded) | _check_outcome_and_refit(values, call, args)
    assert call["data_config"].d_f_tokens == values["d_f_tokens"]
    assert call["data_config"].context_length == 96  # the checkpoint's own shape
    assert call["facts"].target == corpus_label(values["target"])
    assert call["parent"].parent_uri == "models:/pretrained-text/1"
    checked |= {"d_f_tokens", "target", "parent"}
    assert set(values) <= checked, f"unchecked finetune flags: {sorted(set(values) - checked)}"


SWEEP_OWN = {"sizes", "d_f_tokens", "roles", "from_template", "study", "storage", "worker", "max_trials",
             "heartbeat_s", "grace_s", "max_retry", "adaptive", "alpha_tolerance", "max_runs", "law", "epochs",
             "tune_lr"}
"""The sweep's own settings: which cells, which study, how workers share it (tests/test_sweep.py covers them)."""


@pytest.mark.parametrize("role", ["finetune", "scratch"])
def test_every_sweep_flag_reaches_each_run(recorded: dict[str, Any], role: str) -> None:
    from transfer_laws.plugin.sweeps import Cell, recipe_trainer

    args, values = _everything("sweep", {"--roles": role, "--tracking-uri": "sqlite:///w.db",
                                         "--from-template": "models:/pretrained-text@x-{size}"})
    train = recipe_trainer(args, "parent-run")
    with pytest.raises(_Stop):
        train(Cell("2x32", 1234, role), 5)
    call = recorded["train_run"]
    checked = _check_common(values, call, recorded)
    if role == "scratch":  # a scratch-only sweep fits its own tokenizer; with fine-tunes it shares theirs
        checked |= _check_tokenizer(values, recorded)
    assert (call["refit_bootstrap"], call["refit_plots"]) == (values["refit_bootstrap"], values["refit_plots"])
    checked |= {"refit_bootstrap", "refit_plots", "print_outcome"}
    assert call["data_config"].d_f_tokens == 1234 and call["facts"].target == corpus_label(values["target"])
    assert call["extras"].tags["transfer.sweep"] == values["study"] and call["extras"].tags["transfer.trial"] == "5"
    assert call["extras"].tags["mlflow.parentRunId"] == "parent-run"
    tuning = {d for d in values if d.startswith("tuning__")}  # --tune-lr's search: tests/test_lr_tune.py
    checked |= {"target", "evals_per_epoch"} | tuning | SWEEP_OWN
    if role == "finetune":
        checked |= {"vocab_size", "tokenizer_corpus", "tokenizer_max_mb"}  # the checkpoint's tokenizer instead
    assert set(values) <= checked, f"unchecked sweep flags: {sorted(set(values) - checked)}"
