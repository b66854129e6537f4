"""research/paper.md section 5: the identities C1-C4 and C8 as exact checks, and unit conversion."""

from __future__ import annotations

import numpy as np
import pytest
from _fit_synth import TEXT_TO_PYTHON

from transfer_laws.registry.fit import KaplanLaw, TransferLaw, convert_k
from transfer_laws.registry.fit._law import fit_the_fits

TEXT = TransferLaw.from_coefficients(1.9e4, 0.18, 0.38, unit="chars")
MIX = TransferLaw.from_coefficients(2.1e5, 0.096, 0.38, unit="chars")


def test_c1_beta_is_about_twice_alpha() -> None:
    assert 10**TEXT.beta == pytest.approx(2.399, abs=5e-4)
    assert 100**TEXT.alpha == pytest.approx(2.291, abs=5e-4)
    ratio = TEXT.effective_data_transferred(1e8, 1e7) / TEXT.effective_data_transferred(1e8, 1e6)
    assert ratio == pytest.approx(1.514, abs=5e-4)
    assert TEXT.exchange_rate() == pytest.approx(10 ** (0.38 / 0.18), rel=1e-12)


def test_c2_few_shot_figures() -> None:
    assert 300**TEXT.alpha == pytest.approx(2.79, abs=5e-3)
    assert 300**MIX.alpha == pytest.approx(1.73, abs=5e-3)
    assert TEXT.effective_data_transferred(1.75e11, 1.0) == pytest.approx(3.56e8, rel=5e-3)
    assert MIX.effective_data_transferred(1.75e11, 1.0) == pytest.approx(3.93e9, rel=5e-3)
    # Against the paper's 3.7e8 and 4.1e9: +-15% (beta rounding alone moves N^beta by 13%).
    assert TEXT.effective_data_transferred(1.75e11, 1.0) == pytest.approx(3.7e8, rel=0.15)
    assert MIX.effective_data_transferred(1.75e11, 1.0) == pytest.approx(4.1e9, rel=0.15)


def test_c3_formula_at_figure_1() -> None:
    assert TEXT.effective_data_transferred(4e7, 3e5) == pytest.approx(1.42e8, rel=5e-3)
    assert TEXT.effective_data_transferred(4e7, 3e5) / 3e5 == pytest.approx(475, abs=5)
    assert TEXT.effective_data_multiplier(4e7, 3e5) == pytest.approx(476, abs=5)


@pytest.mark.parametrize(("d_f", "fraction"), [(1e8, 0.8516), (1e7, 0.9743)])
def test_c4_fraction_identity(d_f: float, fraction: float) -> None:
    k, alpha, beta = 1.9e4, 0.18, 0.38
    n = 1e8
    n_star = (d_f ** (1 - alpha) / k) ** (1 / beta)
    b2 = TEXT.fraction_from_transfer(n, d_f)
    c1 = 1 / (1 + (n_star / n) ** beta)
    assert b2 == pytest.approx(c1, abs=1e-12)
    assert b2 == pytest.approx(fraction, abs=5e-5)


def test_c4_fit_the_fits_slope_on_noise_free_data() -> None:
    k, alpha, beta = TEXT_TO_PYTHON
    log_n, log_d_f = (g.ravel() for g in np.meshgrid(np.log(np.geomspace(1e5, 1e9, 9)),
                                                      np.log(np.geomspace(1e5, 1e8, 7))))
    log_d_t = np.log(k) + alpha * log_d_f + beta * log_n
    cross = fit_the_fits(log_d_f, log_n, log_d_t)
    assert cross is not None
    assert cross["beta"] == pytest.approx(0.38, abs=1e-9)
    assert cross["alpha"] == pytest.approx(0.18, abs=1e-6)
    assert cross["k"] == pytest.approx(1.9e4, rel=1e-6)


def test_c8_kaplan_laws() -> None:
    one_variable = KaplanLaw(np.log(8.8e13), 0.0, 1.0, 0.076)  # D -> infinity: L = (N_c/N)^alpha_N
    for n, loss in [(1e6, 4.016), (1e8, 2.830), (1e10, 1.994)]:
        assert np.exp(one_variable.log_loss(np.array([n]), np.array([np.inf])))[0] == pytest.approx(loss, abs=5e-4)
    table_2 = KaplanLaw(np.log(6.4e13), np.log(1.8e13), 0.076 / 0.103, 0.103)
    assert np.exp(table_2.log_loss(np.array([1e8]), np.array([np.inf])))[0] == pytest.approx(2.762, abs=5e-4)
    assert np.exp(table_2.log_loss(np.array([1e8]), np.array([1e9])))[0] == pytest.approx(2.957, abs=5e-4)
    # Closed-form inversion round-trips (C6's anchor: N = 1e8, D_F = 1e6 -> D_E = 2.5147e8 under Table 1 + 2).
    log_l = table_2.log_loss(np.array([1e8]), np.array([2.5147e8]))
    assert np.exp(table_2.log_d_e(np.array([1e8]), log_l))[0] == pytest.approx(2.5147e8, rel=1e-12)
    assert 1e6 + TransferLaw.from_coefficients(*TEXT_TO_PYTHON).effective_data_transferred(1e8, 1e6) == \
        pytest.approx(2.5147e8, rel=1e-4)


def test_unit_conversion_tokens_and_chars() -> None:
    c = 3.7
    k_tok = convert_k(1.9e4, 0.18, c, "chars", "tokens")
    assert k_tok == pytest.approx(1.9e4 * c ** (0.18 - 1), rel=1e-12)
    assert convert_k(k_tok, 0.18, c, "tokens", "chars") == pytest.approx(1.9e4, rel=1e-12)
    tok = TransferLaw.from_coefficients(k_tok, 0.18, 0.38)
    # The same data in both units transfers the same amount: D_T,chars = c * D_T,tokens.
    assert TEXT.effective_data_transferred(1e8, c * 1e6) == pytest.approx(c * tok.effective_data_transferred(1e8, 1e6))
    with pytest.raises(ValueError, match="unit"):
        convert_k(1.0, 0.2, c, "bytes", "tokens")
