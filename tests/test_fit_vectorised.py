"""The whole-array paths that let the fitter take 50,000 runs agree with the straightforward per-run and per-draw
computations they replaced (kept here, or in the package for the benchmark, as references)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _fit_synth import TEXT_TO_PYTHON, kaplan_loss, synthetic_runs

from transfer_laws.registry.fit import RunResult, ScratchModel, _bootstrap, fit_transfer_law
from transfer_laws.registry.fit import _types as t
from transfer_laws.registry.fit._fit import LOW_DATA_FRACTION
from transfer_laws.registry.fit._law import design, fit_the_fits, weighted_lstsq

K, ALPHA, BETA = TEXT_TO_PYTHON


def _ft(run_id: str, n: float, d_f: float, loss: float) -> RunResult:
    return RunResult(run_id, "finetune", n, d_f, loss)


def _fine_loss(n: float, d_f: float) -> float:
    return float(kaplan_loss(n, d_f + K * d_f**ALPHA * n**BETA))


def _mixed_runs() -> list[RunResult]:
    """Good runs plus each D_E-stage problem three times over, interleaved, and a field-level one."""
    runs = list(synthetic_runs(TEXT_TO_PYTHON, 0.001, seed=21, d_f=(1e3, 1e4, 1e5, 1e6)))
    for i in range(3):
        runs += [
            _ft(f"no-curve-{i}", 3e7 * (1 + i), 1e4, _fine_loss(3e7, 1e4)),
            # Each at its own D_F: two runs at one (N, D_F) with different losses would conflict (excluded early).
            _ft(f"too-good-{i}", 1e8, 2e4 * (1 + i), (0.9 - 0.05 * i) * float(kaplan_loss(1e8, 1e13))),
            _ft(f"too-bad-{i}", 1e7, 2e4 * (1 + i), (1.1 + 0.05 * i) * float(kaplan_loss(1e7, 1e3))),
            _ft(f"high-data-{i}", 1e6, 1e9 * (1 + i), _fine_loss(1e6, 1e9 * (1 + i))),
            _ft(f"ossified-{i}", 1e8, 2e5 * (1 + i), float(kaplan_loss(1e8, (3 + i) * 1e4))),
            _ft(f"below-inf-{i}", 1e9, 2e4 * (1 + i), 0.95 * float(kaplan_loss(1e9, math.inf))),
            _ft(f"nan-{i}", 1e8, 1e4, math.nan),
        ]
    return runs


def _reasons_one_run_at_a_time(scratch: ScratchModel, n: np.ndarray, log_d_f: np.ndarray, log_d_e: np.ndarray,
                               low_data_fraction: float) -> list[str]:
    """The fitter's exclusion rules written as the plain per-run loop it used before vectorising."""
    reasons = []
    flat = scratch.flat_log_d(n)
    for i in range(n.size):
        lde = log_d_e[i]
        if scratch.method == "interpolate" and scratch.curve_index(n[i]) < 0:
            reasons.append(f"{t.R_NO_CURVE}: N={n[i]:.4g}")
        elif scratch.method == "interpolate" and lde == np.inf:
            reasons.append(t.R_BELOW_RANGE)
        elif scratch.method == "interpolate" and lde == -np.inf:
            reasons.append(t.R_ABOVE_RANGE)
        elif not np.isfinite(lde):
            reasons.append(t.R_NO_D_E)
        elif log_d_f[i] > np.log(low_data_fraction) + flat[i]:
            reasons.append(f"{t.R_HIGH_DATA}: D_F = {np.exp(log_d_f[i] - flat[i]):.3g} x D(N) > {low_data_fraction:g}")
        elif lde <= log_d_f[i]:
            reasons.append(t.R_OSSIFIED)
        else:
            reasons.append("")
    return reasons


@pytest.mark.parametrize("method", ["interpolate", "kaplan"])
def test_exclusions_and_points_match_the_per_run_rules(method: str) -> None:
    law = fit_transfer_law(_mixed_runs(), d_e_method=method, bootstrap=20)
    n = np.array([p.n for p in law.points])
    log_d_f = np.log([p.d_f for p in law.points])
    log_d_e = law.scratch.log_d_e(n, np.log([p.loss for p in law.points]))
    expected = _reasons_one_run_at_a_time(law.scratch, n, log_d_f, log_d_e, LOW_DATA_FRACTION)
    assert [p.reason for p in law.points] == expected
    assert [p.used for p in law.points] == [r == "" for r in expected]
    wanted = [t.R_NO_CURVE, t.R_BELOW_RANGE, t.R_ABOVE_RANGE] if method == "interpolate" else [t.R_NO_D_E]
    for reason in [*wanted, t.R_HIGH_DATA, t.R_OSSIFIED]:
        assert any(r.startswith(reason) for r in expected), reason
    # Field-level exclusions come first, in input order, then the fine-tune runs' in point order.
    assert [e for e in law.excluded if e[0].startswith("nan-")] == [(f"nan-{i}", f"{t.R_NONFINITE}: nan")
                                                                   for i in range(3)]
    assert law.excluded[3:] == [(p.run_id, p.reason) for p in law.points if not p.used]
    used = [p for p in law.points if p.used]
    np.testing.assert_allclose([p.d_t for p in used], [p.d_e - p.d_f for p in used], rtol=1e-12)


def test_fit_the_fits_matches_a_dense_least_squares_solve() -> None:
    rng = np.random.default_rng(5)
    # Unbalanced groups: some D_F values hold one N only (dropped), others up to a dozen.
    log_d_f = np.log(rng.choice(np.geomspace(1e3, 1e7, 9), 150))
    log_n = np.log(rng.choice(np.geomspace(1e6, 1e9, 12), 150))
    log_d_t = np.log(1.9e4) + 0.18 * log_d_f + 0.38 * log_n + rng.normal(0, 0.2, 150)
    log_d_f = np.r_[log_d_f, np.log(3e3)]  # a D_F level with a single run
    log_n, log_d_t = np.r_[log_n, np.log(1e7)], np.r_[log_d_t, 20.0]
    cross = fit_the_fits(log_d_f, log_n, log_d_t)
    assert cross is not None
    levels, gid = np.unique(np.round(log_d_f, 9), return_inverse=True)
    keep = np.bincount(gid)[gid] >= 2
    groups = np.unique(gid[keep])
    x = np.zeros((keep.sum(), groups.size + 1))
    x[np.arange(keep.sum()), np.searchsorted(groups, gid[keep])] = 1.0
    x[:, -1] = log_n[keep]
    coef = np.linalg.lstsq(x, log_d_t[keep] - log_d_f[keep], rcond=None)[0]
    slope, intercept = np.polyfit(levels[groups], -coef[:-1] / coef[-1], 1)
    assert cross["beta"] == pytest.approx(coef[-1], rel=1e-10)
    assert cross["alpha"] == pytest.approx(1.0 - slope * coef[-1], rel=1e-10)
    assert cross["k"] == pytest.approx(np.exp(-intercept * coef[-1]), rel=1e-8)


def test_batched_least_squares_matches_one_solve_per_draw() -> None:
    rng = np.random.default_rng(8)
    log_d_f, log_n = rng.uniform(6, 14, 40), rng.uniform(13, 21, 40)
    x = design(log_d_f, log_n)
    y = x @ np.array([9.9, 0.18, 0.38]) + rng.normal(0, 0.1, (30, 40))
    y[:, 3] = np.nan  # a point whose D_T <= 0 in every draw drops out
    w = rng.poisson(1.0, (30, 40)).astype(float)
    batched = weighted_lstsq(x, y, w)
    for b in range(30):
        keep = (w[b] > 0) & np.isfinite(y[b])
        root = np.sqrt(w[b, keep])
        expected = np.linalg.lstsq(x[keep] * root[:, None], y[b, keep] * root, rcond=None)[0]
        np.testing.assert_allclose(batched[b], expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("form", ["kaplan", "irreducible"])
def test_global_form_jacobians_match_finite_differences(form: str) -> None:
    """The parametric bootstrap steps the global forms by sigma^2 (J'J)^-1: J must be the true derivative."""
    from transfer_laws.registry.fit._irreducible import jacobian_z, log_loss_z
    from transfer_laws.registry.fit._scratch import _kaplan_log_loss, kaplan_jacobian

    rng = np.random.default_rng(0)
    log_n, log_d = rng.uniform(12, 22, 30), rng.uniform(7, 30, 30)
    if form == "kaplan":
        z = np.array([np.log(6.4e13), np.log(1.8e13), np.log(0.74), np.log(0.103)])

        def model(z: np.ndarray) -> np.ndarray:
            return _kaplan_log_loss(np.r_[z[:2], np.exp(z[2:])], log_n, log_d)

        jac = kaplan_jacobian(z, log_n, log_d)
    else:
        z = np.log([1.69, 406.4, 0.34, 80.0, 0.28])

        def model(z: np.ndarray) -> np.ndarray:
            return log_loss_z(z, log_n, log_d)

        jac = jacobian_z(z, log_n, log_d)
    h = 1e-6
    numeric = np.stack([(model(z + h * e) - model(z - h * e)) / (2 * h) for e in np.eye(z.size)], axis=1)
    np.testing.assert_allclose(jac, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("method", ["interpolate", "kaplan"])
def test_bootstrap_in_blocks_of_draws_equals_all_draws_at_once(monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    runs = synthetic_runs(TEXT_TO_PYTHON, 0.001, seed=13)
    whole = fit_transfer_law(runs, d_e_method=method, bootstrap=40, seed=3)
    # 164 scratch runs are the widest array: blocks of 3 draws, the last one holding a single draw.
    monkeypatch.setattr(_bootstrap, "BLOCK_ENTRIES", 3 * 164)
    assert len(_bootstrap.draw_blocks(40, 164)) == 14
    blocked = fit_transfer_law(runs, d_e_method=method, bootstrap=40, seed=3)
    for name in ("k", "alpha", "beta"):
        np.testing.assert_allclose(blocked.draws[name], whole.draws[name], rtol=1e-12)
        assert blocked.intervals[name] == pytest.approx(whole.intervals[name], rel=1e-12)
