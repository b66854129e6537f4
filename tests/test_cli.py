"""The command line's contract: typed flags, YAML configs that match the code, one-line errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from transfer_laws.scripts import cli
from transfer_laws.scripts._args import ConfigError, build_dataclass, load_config

CONFIGS = sorted((Path(cli.__file__).parent / "configs").glob("*.yaml"))


def _command_of(config: Path) -> str:
    """Each shipped YAML names its command on its first line: ``# transfer-laws COMMAND --config ...``."""
    first = config.read_text().splitlines()[0].split()
    assert first[:2] == ["#", "transfer-laws"], f"{config.name} must start with '# transfer-laws COMMAND'"
    return first[2]


def test_there_are_shipped_configs() -> None:
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_matches_the_code(config: Path) -> None:
    command = _command_of(config)
    assert command in cli.COMMANDS
    args = build_dataclass(cli._args_class(command), load_config(config))
    # Every key of the file arrived in the dataclass (nothing silently dropped).
    for key, value in load_config(config).items():
        if not isinstance(value, dict):
            assert getattr(args, key) is not None or value is None


def test_stale_config_key_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "demo.yaml"
    bad.write_text("sizes: [2x32]\nnot_a_setting: 3\n")
    with pytest.raises(ConfigError, match="not_a_setting"):
        build_dataclass(cli._args_class("demo"), load_config(bad))


def test_config_values_are_typed(tmp_path: Path) -> None:
    cfg = tmp_path / "demo.yaml"
    cfg.write_text("d_f_tokens: [1e4, '3e4']\nbootstrap: 200\n")
    args = build_dataclass(cli._args_class("demo"), load_config(cfg))
    assert args.d_f_tokens == [10_000, 30_000]
    bad = tmp_path / "bad.yaml"
    bad.write_text("bootstrap: 2.5\n")
    with pytest.raises(ConfigError, match="whole number"):
        build_dataclass(cli._args_class("demo"), load_config(bad))


def test_flags_override_config(tmp_path: Path) -> None:
    cfg = tmp_path / "demo.yaml"
    cfg.write_text("bootstrap: 200\nsizes: [2x32]\n")
    parser = cli.build_parser(["demo"])
    namespace = parser.parse_args(["demo", "--config", str(cfg), "--bootstrap", "1e3"])
    from transfer_laws.scripts._args import parse_namespace

    args = parse_namespace(cli._args_class("demo"), namespace, namespace.config)
    assert args.bootstrap == 1000 and args.sizes == ["2x32"]


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_command_has_documented_arguments(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--config" in out
    assert "--tracking-uri" in out or command == "serve"  # serve takes the backend store itself


def test_unknown_flag_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--no-such-flag", "3"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unrecognized arguments: --no-such-flag" in err
    assert "(see: transfer-laws demo --help)" in err  # the command's help, though the top-level parser reports it
    assert "Traceback" not in err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_tracking_server_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"http://127.0.0.1:{_closed_port()}"
    code = cli.main(["scratch", "--d-f-tokens", "1000", "--tracking-uri", uri])
    assert code != 0
    err = capsys.readouterr().err
    assert f"tracking server {uri} is unreachable" in err
    assert "Traceback" not in err


RACE = """
import sys, time
from transfer_laws.registry.tracking import client_for, use_tracking_uri
uri, start = sys.argv[1], float(sys.argv[2])
while time.time() < start:  # both processes open the fresh store at the same moment
    pass
use_tracking_uri(uri)
client_for(uri).search_registered_models()
"""


def test_processes_opening_a_fresh_store_together_all_succeed(tmp_path: Path) -> None:
    """The ranks of a torchrun job open one new SQLite store at once: without a lock each ran MLflow's migrations on
    the same file and all but one failed ("duplicate column name"), 6 times in 6 when this test was written."""
    import subprocess
    import sys
    import time

    for attempt in range(3):
        uri = f"sqlite:///{tmp_path / str(attempt) / 'mlflow.db'}"
        start = str(time.time() + 3)
        procs = [subprocess.Popen([sys.executable, "-c", RACE, uri, start], stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], errors


def test_missing_corpus_is_one_clear_line(
    sqlite_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-corpus"
    code = cli.main(["scratch", "--d-f-tokens", "1000", "--target", str(missing)])
    assert code != 0
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.strip()]) <= 2


def test_training_command_exits_zero_and_registers(sqlite_uri: str, tmp_path: Path) -> None:
    """A real pretrain through main() exits 0 and registers its checkpoint; a fine-tune from it returns its run
    record."""
    import json
    import textwrap

    from mlflow import MlflowClient

    corpus = tmp_path / "code"
    corpus.mkdir()
    for module in (json, textwrap, socket):
        (corpus / Path(module.__file__).name).write_text(Path(module.__file__).read_text())
    code = cli.main(["pretrain", "--corpus", str(corpus), "--tokenizer-corpus", str(corpus), "--vocab-size", "300",
                     "--tokens", "3000", "--test-tokens", "256", "--batch-size", "2", "--context-length", "32",
                     "--train.max-steps", "4", "--register-as", "cli-tiny", "--alias", "smoke",
                     "--progress-bar", "false"])
    assert code == 0
    client = MlflowClient(sqlite_uri)
    version = client.get_model_version_by_alias("cli-tiny", "smoke")
    assert str(version.version) == "1"

    # A fine-tune from it returns the project's one run record, the same one the refit's reader reads back.
    from dataclasses import fields

    from transfer_laws.lightning_modules.config import TrainConfig
    from transfer_laws.plugin.recipes import FinetuneArgs, run_finetune
    from transfer_laws.registry.reader import to_point
    from transfer_laws.registry.records import RunResult

    trained = run_finetune(FinetuneArgs(parent="models:/cli-tiny@smoke", target=str(corpus), d_f_tokens=500,
                                        test_tokens=256, batch_size=2, train=TrainConfig(max_steps=3),
                                        progress_bar=False, print_outcome=False, refit_bootstrap=0,
                                        refit_plots=False))
    record = RunResult(**{f.name: getattr(trained, f.name) for f in fields(RunResult)})
    assert record.parent == "models:/cli-tiny/1" and record.d_f_tokens == 500 and record.d_f_chars
    assert to_point(client.get_run(trained.run_id)) == record


def test_sweeps_from_demo_checkpoints_use_the_sizes_the_demo_registers() -> None:
    # A size the demo does not pretrain has no pretrained-text@demo-<size> alias: every fine-tune would fail.
    import yaml

    from transfer_laws.plugin.sweeps import DemoArgs

    files = [*CONFIGS, *sorted((Path(__file__).resolve().parents[1] / "sweeps").glob("*.yaml"))]
    checked = 0
    for path in files:
        config = yaml.safe_load(path.read_text()) or {}
        if "@demo-{size}" in str(config.get("from_template", "")):
            assert set(config["sizes"]) <= set(DemoArgs().sizes), f"{path.name}: sizes the demo does not register"
            checked += 1
    assert checked >= 2  # scripts/configs/sweep-cpu.yaml and sweeps/team.yaml


def test_library_warnings_stay_out_of_normal_output_and_the_environment_is_restored() -> None:
    """MLflow configures its loggers when first imported, after the CLI quieted them: its warnings (e.g. "Failed to
    infer model signature", ten per demo) must stay quiet anyway, and ``--verbose`` shows them."""
    import os
    import subprocess
    import sys

    script = ("import logging, os, sys\n"
              "from transfer_laws.scripts import cli\n"
              "quieted = set() if sys.argv[1] == 'verbose' else cli._quiet_libraries()\n"
              "import mlflow.pyfunc\n"
              "logging.getLogger('mlflow.pyfunc').warning('Failed to infer model signature (test)')\n")
    for mode, shown in (("quiet", False), ("verbose", True)):
        proc = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, timeout=120,
                              env={k: v for k, v in os.environ.items() if k != "MLFLOW_LOGGING_LEVEL"},
                              check=True)
        assert ("Failed to infer model signature" in proc.stderr) is shown, proc.stderr


def test_main_leaves_the_environment_as_it_found_it(capsys: pytest.CaptureFixture[str]) -> None:
    import os

    before = dict(os.environ)
    assert cli.main(["predict", "--n", "-1", "--d-f", "1"]) == 2
    capsys.readouterr()
    assert dict(os.environ) == before
