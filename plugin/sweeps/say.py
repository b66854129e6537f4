"""How the engine of many runs reports: it prints nothing, so only the command line writes to the terminal.

- ``say``: each entry point (``run_sweep``, ``run_pin``, ``train_seed_runs``, ``pin_laws``) takes a callback and
  hands it every line of its result (the command line passes ``print``); a library caller (a test, a benchmark)
  hears nothing unless it passes one.
- ``note`` and ``warn``: the progress of a long loop (the study's bar and ETA, a trial that failed, the learning
  rate chosen, why the loop picked a run) is logged on the ``transfer_laws.progress`` logger. The command line
  attaches a handler that writes each record to stderr as one bare line; a library caller configures logging as
  it likes. ``note`` logs at ``PROGRESS``, above INFO (which the command line silences in the libraries it calls)
  and below WARNING (so Python's last-resort handler keeps it quiet where nobody asked); ``warn`` is a failure a
  library caller should hear even so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeAlias

Say: TypeAlias = Callable[[str], None]
"""Where a line goes: called once per line (or per block of lines joined by newlines), in order."""

PROGRESS = 25
"""The logging level of a progress line (between INFO and WARNING)."""
PROGRESS_LOGGER = "transfer_laws.progress"
"""The logger the engine's progress lines go to."""

logging.addLevelName(PROGRESS, "PROGRESS")
_progress = logging.getLogger(PROGRESS_LOGGER)


def quiet(line: str) -> None:
    """The default ``say``: the line goes nowhere."""


def note(line: str) -> None:
    """A progress line of a long loop (shown by the command line on stderr)."""
    _progress.log(PROGRESS, line)


def warn(line: str) -> None:
    """A failure inside a loop that goes on (a trial that failed): shown on stderr by the command line and, with no
    logging configured, by Python's last-resort handler."""
    _progress.warning(line)
