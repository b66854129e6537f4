"""Time left in a plan of training runs, weighted by compute (N x tokens), not by run count.

A pretraining of 5e5 tokens at N=1e5 costs as much compute as dozens of small fine-tunes: averaging seconds per
run made the demo's ETA jump (644 s -> 381 s). Each run here takes ``a + b * compute`` seconds, where ``a`` is what
every run pays whatever its size (process setup, loading data, evaluations, the refit) and ``b`` the seconds per
unit of compute; both are fitted to the durations of the runs already finished, so the estimate adapts to a loaded
machine instead of trusting a constant.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

RUN_OVERHEAD_S = 3.0
"""Prior per-run overhead (seconds) while the finished runs cannot separate overhead from compute."""


def planned_tokens(budget: float, tokens_per_step: float, max_steps: int, min_steps: int = 40,
                   epochs: float = 10.0) -> float:
    """Tokens an early-stopped run on ``budget`` tokens is expected to train on: about ``epochs`` passes, at least
    ``min_steps`` steps (evaluation spacing x patience), at most ``max_steps``."""
    steps = max(min_steps, epochs * budget / tokens_per_step)
    return min(float(max_steps), steps) * tokens_per_step


def run_cost_model(durations: Sequence[float], compute: Sequence[float],
                   prior_overhead_s: float = RUN_OVERHEAD_S) -> tuple[float, float]:
    """(overhead seconds per run, seconds per unit of compute) fitted to finished runs by least squares, both
    kept >= 0; with fewer than two distinct computes, the overhead is the prior (at most half the mean run)."""
    n = len(durations)
    if n == 0 or sum(compute) <= 0:
        return prior_overhead_s, math.nan
    mean_c, mean_t = sum(compute) / n, sum(durations) / n
    spread = sum((c - mean_c) ** 2 for c in compute)
    if n >= 2 and spread > 0:
        slope = sum((c - mean_c) * (t - mean_t) for c, t in zip(compute, durations, strict=True)) / spread
        overhead = mean_t - slope * mean_c
        if slope >= 0 and overhead >= 0:
            return overhead, slope
        if slope < 0:  # bigger runs were not slower (noise, or overhead dominates): all overhead
            return mean_t, 0.0
        return 0.0, sum(durations) / sum(compute)  # overhead would be negative: all compute
    overhead = min(prior_overhead_s, 0.5 * mean_t)
    return overhead, max(0.0, sum(durations) - overhead * n) / sum(compute)


def eta_seconds(durations: Sequence[float], done: Sequence[float], left: Sequence[float],
                prior_overhead_s: float = RUN_OVERHEAD_S) -> float:
    """Seconds the ``left`` runs will take at the cost model fitted to the ``done`` runs' ``durations``
    (NaN before any run finished)."""
    if not left:
        return 0.0
    overhead, per_compute = run_cost_model(durations, done, prior_overhead_s)
    if math.isnan(per_compute):
        return math.nan
    return overhead * len(left) + per_compute * sum(left)


class ComputeEta:
    """The ETA of a planned sequence of runs, one ``finish_one()`` per finished run, in plan order."""

    def __init__(self, compute: Sequence[float], prior_overhead_s: float = RUN_OVERHEAD_S) -> None:
        self.compute = [float(c) for c in compute]
        self.prior_overhead_s = prior_overhead_s
        self.durations: list[float] = []
        self.start = self._last = time.monotonic()

    @property
    def done(self) -> int:
        return len(self.durations)

    def finish_one(self) -> None:
        """The next planned run finished now."""
        now = time.monotonic()
        self.durations.append(now - self._last)
        self._last = now

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def remaining_s(self) -> float:
        """Estimated seconds until the last planned run finishes (NaN before the first one did)."""
        return eta_seconds(self.durations, self.compute[:self.done], self.compute[self.done:], self.prior_overhead_s)
