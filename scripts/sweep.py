"""``transfer-laws sweep``: a grid of N x D_F x role as one Optuna study (or ``--adaptive``, ``--tune-lr``).

The engine is ``plugin.sweeps``."""

from __future__ import annotations

from transfer_laws.plugin.sweeps.sweep import Args, run

__all__ = ["Args", "run"]
