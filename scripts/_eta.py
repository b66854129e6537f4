"""Time left in a plan of training runs, weighted by compute (N x tokens), not by run count.

A pretraining of 2e5 tokens at N=1e5 costs a hundred fine-tunes at D_F=1e3: averaging seconds per run made the
demo's ETA jump (644 s -> 381 s). Here each run weighs its planned tokens x N, plus a fixed per-run overhead
(process setup, held-out evaluations, the refit) so that many small runs are not estimated as free.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

RUN_OVERHEAD_S = 3.0
"""Seconds a run costs beyond its training compute on 2 CPU cores (setup, evaluations, refit); a prior, not fitted."""


def planned_tokens(budget: float, tokens_per_step: float, max_steps: int, min_steps: int = 40,
                   epochs: float = 10.0) -> float:
    """Tokens an early-stopped run on ``budget`` tokens is expected to train on: about ``epochs`` passes, at least
    ``min_steps`` steps (evaluation spacing x patience), at most ``max_steps``."""
    steps = max(min_steps, epochs * budget / tokens_per_step)
    return min(float(max_steps), steps) * tokens_per_step


class ComputeEta:
    """Seconds per unit of compute, learnt from the runs this process finished, applied to the runs left."""

    def __init__(self, compute: Sequence[float], overhead_s: float = RUN_OVERHEAD_S) -> None:
        self.compute = [float(c) for c in compute]
        self.overhead_s = overhead_s
        self.done = 0
        self.start = time.monotonic()

    def finish_one(self) -> None:
        """The next planned run finished."""
        self.done += 1

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def remaining_s(self) -> float:
        """Estimated seconds until the last planned run finishes (0 once all have)."""
        return eta_seconds(self.elapsed(), self.compute[:self.done], self.compute[self.done:], self.overhead_s)


def eta_seconds(elapsed_s: float, done: Sequence[float], left: Sequence[float],
                overhead_s: float = RUN_OVERHEAD_S) -> float:
    """``left`` runs' time at the seconds-per-compute the ``done`` runs took (after their per-run overhead)."""
    if not left:
        return 0.0
    if not done or sum(done) <= 0:
        return float("nan")
    per_compute = max(0.0, elapsed_s - overhead_s * len(done)) / sum(done)
    return overhead_s * len(left) + per_compute * sum(left)
