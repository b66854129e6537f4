"""The law's own form: the lack-of-fit check on every fit, and the low-data regime found from the fine-tunes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _fit_synth import TEXT_TO_PYTHON, cutoff_bend, smooth_bend, synthetic_runs

from transfer_laws.registry.fit import fit_transfer_law
from transfer_laws.registry.fit._lack_of_fit import curvature_tests, f_statistics
from transfer_laws.registry.fit._law import design

# The calibration benchmark's dense grid: 5 N x 25 scratch D, 4 D_F.
DENSE = {"n_grid": tuple(np.geomspace(1e6, 1e9, 5)), "scratch_d": tuple(np.geomspace(1e3, 1e13, 25)),
         "d_f": tuple(np.geomspace(1e3, 1e6, 4))}
PAST = "past the low-data regime"


def _fit(seed: int, bootstrap: int = 100, **kwargs: object):
    return fit_transfer_law(synthetic_runs(TEXT_TO_PYTHON, 0.002, seed=seed, **DENSE, **kwargs), bootstrap=bootstrap,
                            seed=seed)


def test_f_statistics_match_a_direct_nested_fit() -> None:
    rng = np.random.default_rng(0)
    log_d_f = np.tile(np.log(DENSE["d_f"]), 5)
    log_n = np.repeat(np.log(DENSE["n_grid"]), 4)
    y = 1.0 + 0.18 * log_d_f + 0.38 * log_n - 0.05 * (log_d_f - log_d_f.mean()) ** 2 + rng.normal(0, 0.02, 20)
    q0, family, _ = curvature_tests(log_d_f, log_n)
    assert [t.name for t in family] == ["D_F (pooled)", "D_F (per N)", "N"]
    x0 = design(log_d_f, log_n)
    rss0 = np.sum((y - x0 @ np.linalg.lstsq(x0, y, rcond=None)[0]) ** 2)
    x1 = np.c_[x0, (log_d_f - log_d_f.mean()) ** 2]
    rss1 = np.sum((y - x1 @ np.linalg.lstsq(x1, y, rcond=None)[0]) ** 2)
    expected = (rss0 - rss1) / (rss1 / (20 - 4))
    assert f_statistics(q0, family, y[None, :])[0, 0] == pytest.approx(expected, rel=1e-8)
    # A NaN (a point a draw drops) gives no statistic for that draw, not a wrong one.
    y_nan = np.vstack([y, np.where(np.arange(20) == 3, np.nan, y)])
    assert np.isnan(f_statistics(q0, family, y_nan)[1]).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_straight_law_passes_and_nothing_is_cut(seed: int) -> None:
    law = _fit(seed)
    check, regime = law.checks["lack_of_fit"], law.checks["regime"]
    assert check["passed"] is True
    assert {t["name"] for t in check["tests"]} == {"D_F (pooled)", "D_F (per N)", "N"}
    assert all(0 <= t["p"] <= 1 and t["calibration"] >= 1 for t in check["tests"])
    assert regime["excluded_past_regime"] == 0
    assert not any(p.reason.startswith(PAST) for p in law.points)
    assert not any("low-data regime" in w or "form" in w for w in law.warnings)
    # Where the law holds: every N, the whole D_F grid, no bend seen.
    assert [round(r["n"]) for r in regime["holds"]] == [round(n) for n in DENSE["n_grid"]]
    assert all(r["d_f_low"] == pytest.approx(1e3) and r["d_f_high"] == pytest.approx(1e6)
               and r["bends_above"] is None for r in regime["holds"])
    json.dumps(law.checks, allow_nan=False)


def test_a_bend_is_cut_and_alpha_comes_from_the_points_before_it() -> None:
    straight = _fit(4)
    bent = _fit(4, bend=smooth_bend(10**5.7))
    assert bent.checks["lack_of_fit"]["before_cut"]["passed"] is False
    past = [p for p in bent.points if p.reason.startswith(PAST)]
    assert past and all(p.d_f == pytest.approx(1e6) for p in past)
    assert not any(p.used and p.d_f > 2e5 for p in bent.points)
    every = bent.checks["regime"]["alternatives"][0]
    assert every["rule"] == "every point the scratch cutoff kept"
    # The cut moves alpha back towards the low-data alpha the bend pulled down.
    assert abs(bent.alpha - TEXT_TO_PYTHON[1]) < abs(every["alpha"] - TEXT_TO_PYTHON[1]) - 0.01
    assert abs(bent.alpha - straight.alpha) < 0.03
    assert any(w.startswith(f"{len(past)} fine-tune(s) past the low-data regime excluded") for w in bent.warnings)
    assert {run_id for run_id, why in bent.excluded if why.startswith(PAST)} == {p.run_id for p in past}
    rows = {round(r["n"]): r for r in bent.checks["regime"]["holds"]}
    for p in past:
        assert rows[round(p.n)]["bends_above"] == pytest.approx(1e6)
        assert rows[round(p.n)]["d_f_high"] == pytest.approx(1e5)


def test_an_early_cutoff_leaves_two_d_f_values_and_says_the_form_is_untested() -> None:
    law = _fit(5, bend=cutoff_bend(10**4.5))
    assert law.checks["regime"]["excluded_past_regime"] + sum(p.reason.startswith("ossification")
                                                              for p in law.points) > 0
    assert any("form is not tested where it is fitted" in w for w in law.warnings)
    assert "Curvature in D_F is not tested" in law.checks["verdict"][-1]


def test_an_upward_bend_is_not_cut_but_warns() -> None:
    law = _fit(6, bend=lambda d_f: float((1.0 + d_f / 10**4.5) ** 0.3))
    assert law.checks["lack_of_fit"]["passed"] is False
    assert law.checks["regime"]["excluded_past_regime"] == 0
    assert any(w.startswith("the law's form does not fit its points") for w in law.warnings)


def test_without_bootstrap_the_check_is_the_classical_f_test() -> None:
    law = _fit(7, bootstrap=0, bend=smooth_bend(10**5.7))
    before = law.checks["lack_of_fit"]["before_cut"]
    assert before["passed"] is False and all(t["calibration"] == 1.0 for t in before["tests"])
    assert law.checks["regime"]["excluded_past_regime"] > 0


def test_a_significant_but_immaterial_curvature_does_not_fail() -> None:
    """With thousands of points a test finds curvatures far too small to matter; the check needs them material."""
    from transfer_laws.registry.fit._lack_of_fit import MIN_SHARE, family_fails, p_values, shares

    rng = np.random.default_rng(1)
    log_d_f = np.tile(np.log(np.geomspace(1e3, 1e6, 1000)), 5)
    log_n = np.repeat(np.log(DENSE["n_grid"]), 1000)
    bent = 0.18 * log_d_f + 0.38 * log_n - 0.0005 * (log_d_f - log_d_f.mean()) ** 2
    y = bent + rng.normal(0, 0.01, log_d_f.size)
    q0, family, _ = curvature_tests(log_d_f, log_n)
    f_obs = f_statistics(q0, family, y[None, :])[0]
    ones = np.ones(len(family))
    p, share = p_values(family, f_obs, ones), shares(family, f_obs, ones)
    assert p[0] < 1e-6 and share[0] < MIN_SHARE
    assert not family_fails(p, share, [t.name for t in family])
    # Ten times the curvature is material.
    y = 0.18 * log_d_f + 0.38 * log_n - 0.005 * (log_d_f - log_d_f.mean()) ** 2 + rng.normal(0, 0.01, log_d_f.size)
    f_obs = f_statistics(q0, family, y[None, :])[0]
    assert family_fails(p_values(family, f_obs, ones), shares(family, f_obs, ones), [t.name for t in family])


def test_no_transfer_above_the_fitted_d_f_warns() -> None:
    """Sparse grid, D_T cut off at D_F = 3e4: at the largest D_F some fine-tunes show no transfer at all."""
    sparse = {"n_grid": (1e6, 10**7.5, 1e9), "scratch_d": tuple(np.geomspace(1e4, 1e11, 6)), "d_f": (1e3, 10**4.5, 1e6)}
    law = fit_transfer_law(synthetic_runs(TEXT_TO_PYTHON, 0.002, seed=105000, bend=cutoff_bend(10**4.5), **sparse),
                           bootstrap=100, seed=105000)
    ossified = [p for p in law.points if p.reason.startswith("ossification")]
    assert ossified and all(p.d_f == pytest.approx(1e6) for p in ossified)
    warning = next(w for w in law.warnings if "show no transfer (D_T <= 0) above the D_F fitted" in w)
    assert warning.startswith(f"{len(ossified)} fine-tune(s)") and "D_F = 1e+06 at N = " in warning


def test_misfit_and_the_report_read_the_regime_from_the_checks(tmp_path) -> None:
    from transfer_laws.registry.fit import misfit, plot_law

    straight, bent = _fit(4), _fit(4, bend=smooth_bend(10**5.7))
    assert misfit(straight.checks) == [] and misfit({}) == []  # a fit made before the check: nothing to say
    (why,) = misfit(bent.checks)
    cut = bent.checks["regime"]["excluded_past_regime"]
    assert why == f"{cut} fine-tune(s) lie past the low-data regime: the law bends down beyond D_F = 1e+05 at some N"
    sparse = {"n_grid": (1e6, 10**7.5, 1e9), "scratch_d": tuple(np.geomspace(1e4, 1e11, 6)), "d_f": (1e3, 10**4.5, 1e6)}
    ended = fit_transfer_law(synthetic_runs(TEXT_TO_PYTHON, 0.002, seed=105000, bend=cutoff_bend(10**4.5), **sparse),
                             bootstrap=100, seed=105000)
    assert any("show no transfer" in line for line in misfit(ended.checks))
    html = [p for p in plot_law(bent, tmp_path) if p.name == "index.html"][0].read_text()
    section = html[html.index("Where the law holds"):]
    section = section[:section.index("</table>")]
    assert section.count("<tr>") == 1 + len(bent.checks["regime"]["holds"]) and "bends down above" in section
    assert section.count("1e+05</td><td class='num'>1e+06</td>") == cut


def test_the_d_t_chart_draws_the_points_past_the_regime() -> None:
    from transfer_laws.registry.fit._svg_plots import d_t_chart

    bent = _fit(4, bend=smooth_bend(10**5.7))
    assert any(p.reason.startswith(PAST) for p in bent.points)
    assert "past the low-data regime" in d_t_chart(bent)  # the crosses' legend entry
    assert "past the low-data regime" not in d_t_chart(_fit(4))
