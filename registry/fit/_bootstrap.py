"""The law step of the bootstrap: given every draw's ln D_E of the used fine-tune runs, refit the law for all draws
at once with array operations (in cache-sized blocks of draws)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._law import design, weighted_lstsq

# Draw x run entries per block of bootstrap draws: 16 draws at 25,000 runs, a few MB per array, cache-sized.
BLOCK_ENTRIES = 400_000


def draw_log_d_t(log_d_e: np.ndarray, log_d_f: np.ndarray) -> np.ndarray:
    """B x m ln D_T of the draws; NaN where D_T <= 0 or D_E is off the curve."""
    d_t = np.exp(log_d_e) - np.exp(log_d_f)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.isfinite(d_t) & (d_t > 0), np.log(np.where(d_t > 0, d_t, 1.0)), np.nan)


def law_draws(log_d_e: np.ndarray, f_counts: np.ndarray, log_d_f: np.ndarray, log_n: np.ndarray) -> np.ndarray:
    """B x 3 (ln k, alpha, beta); points whose D_T <= 0 or D_E is off the curve in a draw drop out of that draw."""
    y = draw_log_d_t(log_d_e, log_d_f)
    x = design(log_d_f, log_n)
    return weighted_lstsq(x, y, f_counts)


def draw_blocks(draws: int, width: int) -> list[slice]:
    """Consecutive slices of ``draws`` holding about ``BLOCK_ENTRIES`` draw x run entries each (``width`` runs)."""
    size = max(1, BLOCK_ENTRIES // max(width, 1))
    return [slice(lo, min(lo + size, draws)) for lo in range(0, draws, size)]


def law_draws_in_blocks(log_d_e_of: Callable[[slice], np.ndarray], f_counts: np.ndarray, log_d_f: np.ndarray,
                        log_n: np.ndarray, width: int,
                        statistic: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``law_draws`` over blocks of draws, each block's B x m ln D_E from ``log_d_e_of(block)``; same result as one
    call on all draws (every draw is computed on its own), but a block's arrays stay in cache: at 25,000 fine-tune
    runs, 1,000 draws in one piece spend most of their time waiting on memory. Also returns ``statistic`` of every
    draw's ln D_T (B x T; B x 0 without one), e.g. the lack-of-fit statistics under the fitted law."""
    draws = f_counts.shape[0]
    raw = np.empty((draws, 3))
    stats: list[np.ndarray] = []
    for block in draw_blocks(draws, width):
        log_d_e = log_d_e_of(block)
        raw[block] = law_draws(log_d_e, f_counts[block], log_d_f, log_n)
        if statistic is not None:
            stats.append(statistic(draw_log_d_t(log_d_e, log_d_f)))
    return raw, (np.concatenate(stats) if stats else np.empty((draws, 0)))
