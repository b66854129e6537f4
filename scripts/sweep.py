"""``transfer-laws sweep``: a grid of N x D_F x role as one Optuna study (or ``--adaptive``, ``--tune-lr``).

The engine is ``plugin.sweeps``; this prints the lines it says as its workers train."""

from __future__ import annotations

from functools import partial

from transfer_laws.plugin.sweeps import SweepArgs as Args
from transfer_laws.plugin.sweeps import run_sweep

__all__ = ["Args", "run"]


def run(args: Args) -> int:
    return run_sweep(args, say=partial(print, flush=True))
