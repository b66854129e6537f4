"""Synthetic scratch and fine-tune runs from known laws, for the fitter's tests and benchmark."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from transfer_laws.registry.fit import RunResult

# Kaplan et al. 2020, Table 2 (research/paper.md section 2), used as the true from-scratch law.
N_C, D_C, ALPHA_N, ALPHA_D = 6.4e13, 1.8e13, 0.076, 0.103
# Table 1 of Hernandez et al. 2021 (k, alpha, beta).
TEXT_TO_PYTHON = (1.9e4, 0.18, 0.38)
MIX_TO_PYTHON = (2.1e5, 0.096, 0.38)

# A from-scratch law with an irreducible loss, L = E + A/N^a + B/D^b: Hoffmann et al. (2022)'s E, A, a and b, with
# B scaled down so losses at the smallest D stay near 10 nats/token.
E_IRR, A_IRR, ALPHA_N_IRR, B_IRR, ALPHA_D_IRR = 1.69, 406.4, 0.34, 80.0, 0.28

N_GRID = (1e6, 1e7, 1e8, 1e9)
SCRATCH_D = tuple(np.geomspace(1e3, 1e13, 41))
FINETUNE_D_F = tuple(np.geomspace(1e3, 1e6, 7))


def kaplan_loss(n: np.ndarray | float, d: np.ndarray | float) -> np.ndarray:
    """L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D."""
    return ((N_C / np.asarray(n)) ** (ALPHA_N / ALPHA_D) + D_C / np.asarray(d)) ** ALPHA_D


def irreducible_loss(n: np.ndarray | float, d: np.ndarray | float) -> np.ndarray:
    """L(N, D) = E + A/N^a + B/D^b."""
    return E_IRR + A_IRR / np.asarray(n) ** ALPHA_N_IRR + B_IRR / np.asarray(d) ** ALPHA_D_IRR


def smooth_bend(d_b: float, drop: float = 0.3) -> Callable[[float], float]:
    """A smoothly broken power law: D_T's slope in D_F falls by ``drop`` past D_F = d_b, over about two decades."""
    return lambda d_f: float((1.0 + d_f / d_b) ** -drop)


def cutoff_bend(d_b: float) -> Callable[[float], float]:
    """An exponential cutoff: D_T collapses past D_F = d_b (pretraining stops helping; ossification)."""
    return lambda d_f: float(np.exp(-d_f / d_b))


def synthetic_runs(truth: tuple[float, float, float], loss_noise: float = 0.0, seed: int = 0,
                   n_grid: tuple[float, ...] = N_GRID, scratch_d: tuple[float, ...] = SCRATCH_D,
                   d_f: tuple[float, ...] = FINETUNE_D_F, loss_law: Callable[..., np.ndarray] = kaplan_loss,
                   heavy_tails: bool = False, bend: Callable[[float], float] | None = None) -> list[RunResult]:
    """Scratch runs at L(N, D) and fine-tune runs at L(N, D_F + k D_F^alpha N^beta), times exp(Normal(0, noise))
    (with ``heavy_tails``, Student-t noise with 3 degrees of freedom scaled to the same standard deviation); L is
    ``loss_law`` (the Kaplan form by default). ``bend``: a factor on D_T by D_F (1 at small D_F), for laws that hold
    only in a low-data regime."""
    k, alpha, beta = truth
    rng = np.random.default_rng(seed)

    def noise() -> float:
        return float(rng.standard_t(3) / np.sqrt(3.0) if heavy_tails else rng.normal()) * loss_noise

    runs = []
    for n in n_grid:
        for d in scratch_d:
            loss = float(loss_law(n, d) * np.exp(noise()))
            runs.append(RunResult(f"s-{n:.3g}-{d:.4g}", "scratch", n, float(d), loss))
        for df in d_f:
            d_t = k * df**alpha * n**beta * (1.0 if bend is None else bend(df))
            loss = float(loss_law(n, df + d_t) * np.exp(noise()))
            runs.append(RunResult(f"f-{n:.3g}-{df:.4g}", "finetune", n, float(df), loss))
    return runs
