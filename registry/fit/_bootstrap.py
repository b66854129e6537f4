"""Bootstrap over runs: resample scratch runs (within each N, so every curve survives) and the used fine-tune runs,
redo D_E and the law with array operations over many draws at once (in cache-sized blocks of draws)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._effective import invert_present
from ._kaplan_batch import refit_kaplan_batch
from ._law import design, huber_lstsq, weighted_lstsq
from ._scratch import KaplanLaw, fit_kaplan, kaplan_log_d_e

# Draw x run entries per block of bootstrap draws: 16 draws at 25,000 runs, a few MB per array, cache-sized.
BLOCK_ENTRIES = 400_000


def resample_counts(rng: np.random.Generator, draws: int, size: int) -> np.ndarray:
    """draws x size matrix of how often each item is picked when drawing ``size`` with replacement."""
    picks = rng.integers(0, size, (draws, size))
    counts = np.empty((draws, size))
    # One bincount per draw keeps its tally in cache; a single flat bincount over draws x size scatters at random
    # across the whole matrix and is several times slower at 25,000 runs.
    for b in range(draws):
        counts[b] = np.bincount(picks[b], minlength=size)
    return counts


def scratch_presence(rng: np.random.Generator, draws: int, group: np.ndarray) -> np.ndarray:
    """draws x n_scratch: which scratch runs each draw holds, resampling within each N group."""
    counts = np.zeros((draws, group.size))
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        counts[:, members] = resample_counts(rng, draws, members.size)
    return counts


def log_d_e_interpolate(counts: np.ndarray, s_group: np.ndarray, s_log_d: np.ndarray, s_log_l: np.ndarray,
                        f_group: np.ndarray, f_log_l: np.ndarray) -> np.ndarray:
    """B x m ln D_E of fine-tune runs (grouped like the scratch runs, -1 = no curve) for each scratch resampling."""
    out = np.full((counts.shape[0], f_group.size), np.nan)
    for g in np.unique(f_group[f_group >= 0]):
        s_idx = np.flatnonzero(s_group == g)
        s_idx = s_idx[np.argsort(s_log_d[s_idx], kind="stable")]
        f_idx = np.flatnonzero(f_group == g)
        out[:, f_idx] = invert_present(s_log_d[s_idx], s_log_l[s_idx], counts[:, s_idx] > 0, f_log_l[f_idx])
    return out


def log_d_e_global(counts: np.ndarray, point: KaplanLaw, s_log_n: np.ndarray, s_log_d: np.ndarray,
                   s_log_l: np.ndarray, f_n: np.ndarray, f_log_l: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """B x m ln D_E from a Kaplan refit per draw (a block of draws at once, started at the point estimate), and the
    B x 4 refits (ln N_c, ln D_c, alpha_N/alpha_D, alpha_D)."""
    start = np.array([point.log_n_c, point.log_d_c, point.a_n, point.alpha_d])
    params = np.empty((counts.shape[0], 4))
    for block in draw_blocks(counts.shape[0], s_log_n.size):
        params[block] = refit_kaplan_batch(start, s_log_n, s_log_d, s_log_l, counts[block])
    return kaplan_log_d_e(params, np.log(f_n), f_log_l), params


def log_d_e_global_per_draw(counts: np.ndarray, point: KaplanLaw, s_log_n: np.ndarray, s_log_d: np.ndarray,
                            s_log_l: np.ndarray, f_n: np.ndarray,
                            f_log_l: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``log_d_e_global`` the slow way, one scipy BFGS refit per draw: the baseline benchmarks/bench_fit.py compares
    the batched refit with, and the reference its test checks it against."""
    start = np.array([point.log_n_c, point.log_d_c, point.a_n, point.alpha_d])
    out = np.empty((counts.shape[0], f_n.size))
    params = np.empty((counts.shape[0], 4))
    for b, w in enumerate(counts):
        law = fit_kaplan(s_log_n, s_log_d, s_log_l, weight=w, start=start)
        params[b] = (law.log_n_c, law.log_d_c, law.a_n, law.alpha_d)
        out[b] = law.log_d_e(f_n, f_log_l)
    return out, params


def law_draws(log_d_e: np.ndarray, f_counts: np.ndarray, log_d_f: np.ndarray, log_n: np.ndarray,
              robust: bool) -> np.ndarray:
    """B x 3 (ln k, alpha, beta); points whose D_T <= 0 or D_E is off the curve in a draw drop out of that draw."""
    d_t = np.exp(log_d_e) - np.exp(log_d_f)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(np.isfinite(d_t) & (d_t > 0), np.log(np.where(d_t > 0, d_t, 1.0)), np.nan)
    x = design(log_d_f, log_n)
    return (huber_lstsq if robust else weighted_lstsq)(x, y, f_counts)


def draw_blocks(draws: int, width: int) -> list[slice]:
    """Consecutive slices of ``draws`` holding about ``BLOCK_ENTRIES`` draw x run entries each (``width`` runs)."""
    size = max(1, BLOCK_ENTRIES // max(width, 1))
    return [slice(lo, min(lo + size, draws)) for lo in range(0, draws, size)]


def law_draws_in_blocks(log_d_e_of: Callable[[slice], np.ndarray], f_counts: np.ndarray, log_d_f: np.ndarray,
                        log_n: np.ndarray, robust: bool, width: int) -> np.ndarray:
    """``law_draws`` over blocks of draws, each block's B x m ln D_E from ``log_d_e_of(block)``; same result as one
    call on all draws (every draw is computed on its own), but a block's arrays stay in cache: at 25,000 fine-tune
    runs, 1,000 draws in one piece spend most of their time waiting on memory."""
    raw = np.empty((f_counts.shape[0], 3))
    for block in draw_blocks(f_counts.shape[0], width):
        raw[block] = law_draws(log_d_e_of(block), f_counts[block], log_d_f, log_n, robust)
    return raw
