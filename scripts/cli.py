"""``transfer-laws``: one command line for pretraining, fine-tuning, sweeps, refits, predictions and the demo.

Every subcommand is one typed entry function taking one dataclass of arguments (``--help`` shows each field's
docstring) and also accepts ``--config file.yaml``. Errors are one clear line and a non-zero exit; ``--verbose``
shows the traceback. Heavy imports (torch, Lightning, MLflow) happen inside the subcommand that needs them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, NoReturn

from transfer_laws.plugin.sweeps.say import PROGRESS, PROGRESS_LOGGER
from transfer_laws.registry.schema import ENV_VERBOSE
from transfer_laws.scripts._args import ConfigError, add_dataclass_arguments, parse_namespace
from transfer_laws.scripts._errors import UserError, redact

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

EXIT_TERMINATED = 143
"""128 + SIGTERM, as a shell reports a process the signal ended."""


@dataclass(frozen=True)
class Command:
    """A subcommand: where its entry function and argument dataclass live."""

    module: str
    """Module under transfer_laws.scripts holding ``Args`` and ``run(args) -> int | None``."""
    help: str
    """One line for the command list."""
    exits: str = "0 done, 1 failed, 2 invalid arguments (nothing was started)"
    """The exit codes, shown under the command's --help."""


COMMANDS: dict[str, Command] = {
    "demo": Command("demo", "From nothing to a fitted law on the embedded store (tokenizer, pretrain, sweep, refit)."),
    "pretrain": Command("pretrain", "Pretrain a GPT on a source corpus and register the checkpoint."),
    "finetune": Command("finetune", "Fine-tune a registered checkpoint (--from models:/name@alias) on D_F tokens."),
    "scratch": Command("scratch", "Train from scratch on D tokens of the target (the D_E reference curve)."),
    "register": Command("register", "Register the checkpoint of a finished pretraining run."),
    "sweep": Command("sweep", "A grid (or adaptive choice) of fine-tune and scratch runs, Optuna-backed."),
    "pin": Command("pin", "Train the runs next-run advice chooses until the law is determined (or the budget is "
                   "spent); Optuna-backed workers.",
                   "0 pinned, 1 failed, 2 invalid arguments, 3 budget spent or no law to start from (what is "
                   "missing and the predicted cost to finish are printed), 4 no candidate run helps"),
    "refit": Command("refit", "Refit a law now (for CI): prints it, exit code says whether it fitted.",
                     "0 ok, 1 unexpected error, 2 bad input, 3 fit failed, 4 drift gate tripped, 5 evidence gate "
                     "tripped (docs/ci-refit.md)"),
    "watch": Command("watch", "Poll for finished runs not covered by the latest law version, and refit."),
    "predict": Command("predict", "What a law predicts, with intervals: D_T, D_E and loss at --n/--d-f; the D_F or N "
                                  "needed for a --target-loss; --next: which runs to do next.",
                       "0 answered, 1 failed, 2 invalid arguments or unknown law, 3 the target loss is out of the "
                       "law's reach"),
    "choose": Command("choose", "Which registered checkpoint to fine-tune from: every source of a target ranked at "
                      "(N, D_F).", "0 answered, 1 failed, 2 invalid arguments or a target without laws, 3 no law of "
                      "the target has a fit to rank by"),
    "report": Command("report", "Plots and an HTML page for a law version (--target: every law of a target)."),
    "lineage": Command("lineage", "Runs that started from a checkpoint version, or a run's ancestry."),
    "serve": Command("serve", "An MLflow server with the transfer-laws app (hook and /transfer-laws/ page).",
                     "0 stopped cleanly, 1 could not listen (busy port) or the server failed, 2 invalid arguments"),
    "webhook": Command("webhook", "Create a registry webhook on a server that triggers refits."),
}


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; only the subcommand named in ``argv`` gets its arguments (its module may import torch)."""
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = argparse.ArgumentParser(
        prog="transfer-laws",
        description="Scaling Laws for Transfer, tracked in MLflow. Each command's --help lists its arguments.",
    )
    parser.add_argument("--verbose", action="store_true", help="show tracebacks and library logs")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help,
                                    epilog=f"exit codes: {command.exits}")
        sub.add_argument("--config", type=Path, default=None, help="YAML file with the arguments below")
        sub.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        if name == chosen:
            try:  # the argument types of a training command name torch-side classes
                add_dataclass_arguments(sub, _args_class(name))
            except ModuleNotFoundError as exc:
                if not _needs_training_stack(exc):
                    raise
                raise _missing_extra(name, exc) from exc
    return parser


TRAINING_STACK = ("torch", "lightning", "pytorch_lightning", "transformers", "datasets", "tokenizers", "safetensors",
                  "optuna")
"""Modules of the ``[train]`` extra: the core install (refit, predict, report, lineage, watch, serve, webhook)
works without them."""


def _needs_training_stack(exc: BaseException) -> bool:
    return isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in TRAINING_STACK


def _missing_extra(name: str, exc: ModuleNotFoundError) -> UserError:
    return UserError(f"'transfer-laws {name}' needs the training stack ({exc.name} is not installed): "
                     "pip install 'mlflow-transfer-laws[train]'")


def _module(name: str) -> ModuleType:
    try:
        return importlib.import_module(f"transfer_laws.scripts.{COMMANDS[name].module}")
    except ModuleNotFoundError as exc:
        if not _needs_training_stack(exc):
            raise
        raise _missing_extra(name, exc) from exc


def _args_class(name: str) -> type[DataclassInstance]:
    args: type[DataclassInstance] = _module(name).Args
    return args


def _one_line_errors(parser: argparse.ArgumentParser, argv: Sequence[str] = ()) -> None:
    """argparse prints usage + error; we print the error and where to look, in one line each.

    Unrecognized arguments are reported by the top-level parser, so its hint names the command from ``argv``."""
    chosen = next((a for a in argv if a in COMMANDS), None)
    command = parser.prog.removeprefix("transfer-laws").strip() or chosen
    where = f"transfer-laws {command} --help" if command else "transfer-laws --help"

    def error(message: str) -> NoReturn:
        sys.stderr.write(f"transfer-laws: error: {message} (see: {where})\n")
        sys.exit(2)

    # This parser's own error (not the class's: build_parser's parsers keep argparse's), which mypy refuses to see
    # assigned over a method
    parser.error = error  # type: ignore[method-assign]
    for action in parser._actions:  # argparse keeps subparsers here
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _one_line_errors(sub, argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
    except UserError as exc:  # a command whose extra is not installed
        sys.stderr.write(f"transfer-laws: error: {exc}\n")
        return 1
    _one_line_errors(parser, argv)
    namespace = parser.parse_args(argv)
    verbose = bool(getattr(namespace, "verbose", False)) or os.environ.get(ENV_VERBOSE) == "1"
    if not namespace.command:
        parser.print_help()
        return 2
    quieted = set() if verbose else _quiet_libraries()
    progress = _show_progress()
    try:
        args = parse_namespace(_args_class(namespace.command), namespace, namespace.config)
        result = _module(namespace.command).run(args)
    except KeyboardInterrupt:
        sys.stderr.write("transfer-laws: interrupted\n")
        return 130
    except SystemExit as exc:
        # Lightning ends a fit that got SIGTERM with SIGTERMException, a SystemExit without a code: exit 0 would
        # tell a scheduler the run finished. The run itself is already marked FAILED by the logger.
        if type(exc).__name__ == "SIGTERMException":
            sys.stderr.write(f"transfer-laws {namespace.command}: terminated (SIGTERM); the run is marked FAILED\n")
            return EXIT_TERMINATED
        raise
    except Exception as exc:  # the CLI's one place that turns errors into one line
        if verbose:
            traceback.print_exc()
        sys.stderr.write(f"transfer-laws {namespace.command}: error: {redact(_describe(exc))}\n")
        if not verbose and not _is_users(exc) and not _needs_training_stack(exc):
            sys.stderr.write("(run with --verbose for the traceback)\n")
        return getattr(exc, "exit_code", 1)
    finally:
        logging.disable(logging.NOTSET)  # main() also runs in-process (tests, the sweep): leave logging as found
        _hide_progress(progress)
        for key in quieted:  # and the environment: a server or test started later logs as it would have
            os.environ.pop(key, None)
        QUIETED.difference_update(quieted)
    # run() returns an exit code, or the object it made (a trained run, a checkpoint) for in-process callers.
    return result if isinstance(result, int) else 0


def _is_users(exc: BaseException) -> bool:
    """An error whose message is the whole story: ours, or one of the rooms' bad-input errors (``exit_code`` 2: an
    unknown law or checkpoint alias, a store that is not there)."""
    return isinstance(exc, (UserError, ConfigError)) or getattr(exc, "exit_code", None) == 2


def _describe(exc: BaseException) -> str:
    if _is_users(exc):
        return str(exc)
    if _needs_training_stack(exc):
        return f"this command needs the training stack ({getattr(exc, 'name', '')} is not installed): " \
               "pip install 'mlflow-transfer-laws[train]'"
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    name = type(exc).__name__
    return f"{name}: {first}" if first else name


class _StderrLines(logging.Handler):
    """Each record as one bare line on the ``sys.stderr`` of the moment (a test's capture, a redirected stream)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # a closed stream must not end the run
            self.handleError(record)


def _show_progress() -> tuple[logging.Logger, logging.Handler, int, bool] | None:
    """Put the engine's progress lines (``plugin.sweeps.say``: ``note`` and ``warn``) on stderr for this call;
    returns what ``_hide_progress`` restores (None when an outer call, main() run in-process, already shows them)."""
    logger = logging.getLogger(PROGRESS_LOGGER)
    if any(isinstance(h, _StderrLines) for h in logger.handlers):
        return None
    handler = _StderrLines(PROGRESS)
    saved = (logger, handler, logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(PROGRESS)
    logger.propagate = False  # shown once, here, whatever the root logger does
    return saved


def _hide_progress(saved: tuple[logging.Logger, logging.Handler, int, bool] | None) -> None:
    if saved is None:
        return
    logger, handler, level, propagate = saved
    logger.removeHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate


QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_OFFLINE": "1",
    "PYTHONWARNINGS": "ignore",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # MLflow sets its own loggers' level when it is imported (after this runs), from this variable: without it
    # its warnings ("Failed to infer model signature") reach the user whatever level we set here.
    "MLFLOW_LOGGING_LEVEL": "ERROR",
}
"""Environment that keeps library chatter out of normal output (set only where the user has not)."""
QUIETED: set[str] = set()
"""The QUIET_ENV variables this process set itself (``serve`` leaves them out of the server's environment)."""


def _quiet_libraries() -> set[str]:
    """Quiet the libraries for this call; returns the environment variables it set (main() removes them)."""
    quieted = {key for key in QUIET_ENV if key not in os.environ}
    for key in quieted:
        os.environ[key] = QUIET_ENV[key]
    QUIETED.update(quieted)
    # Lightning resets its loggers' levels when imported, so silence INFO records globally instead.
    logging.disable(logging.INFO)
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("mlflow", "alembic", "lightning", "lightning.pytorch", "pytorch_lightning", "datasets",
                 "urllib3", "botocore"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return quieted


if __name__ == "__main__":
    sys.exit(main())
