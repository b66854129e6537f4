"""How the engine of many runs reports its progress lines: each entry point (``run_sweep``, ``run_pin``,
``train_seed_runs``, ``pin_laws``) takes a ``say`` callback and hands every line to it, so only the command line
prints (``scripts/`` passes ``print``); a library caller (a test, a benchmark) hears nothing unless it passes one."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

Say: TypeAlias = Callable[[str], None]
"""Where a progress line goes: called once per line (or per block of lines joined by newlines), in order."""


def quiet(line: str) -> None:
    """The default ``say``: the line goes nowhere."""
