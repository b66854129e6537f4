"""``transfer-laws sweep``: a grid of N x D_F x role as one Optuna study (or ``--adaptive``, ``--tune-lr``).

The engine is ``plugin.sweeps``; its workers print their progress as they train."""

from __future__ import annotations

from transfer_laws.plugin.sweeps import SweepArgs as Args
from transfer_laws.plugin.sweeps import run_sweep

__all__ = ["Args", "run"]


def run(args: Args) -> int:
    return run_sweep(args)
