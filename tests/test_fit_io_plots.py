"""Save/load round trip, predictions with intervals, inverse queries, and the plots."""

from __future__ import annotations

import base64
import dataclasses
import struct
from pathlib import Path

import numpy as np
import pytest
from _fit_synth import TEXT_TO_PYTHON, kaplan_loss, synthetic_runs

from transfer_laws.registry import TransferLaw, fit_transfer_law, plot_law
from transfer_laws.registry.fit import _plots

RUNS = synthetic_runs(TEXT_TO_PYTHON, 0.001, seed=7, d_f=(1e3, 1e4, 1e5, 1e6))


@pytest.fixture(scope="module")
def law() -> TransferLaw:
    return fit_transfer_law(RUNS, bootstrap=300, seed=2)


@pytest.mark.parametrize("method", ["interpolate", "global"])
def test_save_load_round_trip_is_lossless(tmp_path: Path, method: str) -> None:
    original = fit_transfer_law(RUNS, d_e_method=method, bootstrap=30, seed=3)
    original.scratch.kaplan_law()  # make sure the lazily fitted scratch law travels too
    folder = original.save(tmp_path / "fit")
    assert TransferLaw.is_fit_folder(folder) and not TransferLaw.is_fit_folder(tmp_path)
    loaded = TransferLaw.load(folder)
    assert loaded.to_dict() == original.to_dict()
    for name in ("k", "alpha", "beta"):
        np.testing.assert_array_equal(loaded.draws[name], original.draws[name])
    assert loaded.checks == original.checks and loaded.scratch.method == original.scratch.method
    assert dataclasses.asdict(loaded.predict(3e7, 2e4)) == dataclasses.asdict(original.predict(3e7, 2e4))
    assert loaded.fingerprint == original.fingerprint and len(loaded.fingerprint) == 64
    with pytest.raises(ValueError, match="not a fit folder"):
        TransferLaw.load(tmp_path)


def test_fingerprint_depends_on_eligible_inputs_only() -> None:
    base = fit_transfer_law(RUNS, bootstrap=0)
    shuffled = fit_transfer_law(RUNS[::-1], bootstrap=0)
    with_bad = fit_transfer_law([*RUNS, dataclasses.replace(RUNS[-1], run_id="x", best_test_loss=float("nan"))],
                                bootstrap=0)
    nudged = dataclasses.replace(RUNS[-1], best_test_loss=RUNS[-1].best_test_loss * 1.001)
    moved = fit_transfer_law([*RUNS[:-1], nudged], bootstrap=0)
    assert base.fingerprint == shuffled.fingerprint == with_bad.fingerprint
    assert moved.fingerprint != base.fingerprint


def test_predictions_are_vectorised_with_ordered_intervals(law: TransferLaw) -> None:
    n = np.array([1e6, 1e7, 1e8])
    d_f = np.array([1e4, 1e5, 1e6])
    pred = law.predict(n, d_f)
    assert pred.d_t.shape == (3,)
    np.testing.assert_allclose(pred.d_t, law.effective_data_transferred(n, d_f), rtol=1e-12)
    np.testing.assert_allclose(pred.multiplier, law.effective_data_multiplier(n, d_f), rtol=1e-12)
    np.testing.assert_allclose(pred.fraction, law.fraction_from_transfer(n, d_f), rtol=1e-12)
    for name in ("d_t", "d_e", "multiplier", "fraction", "loss"):
        value, low, high = (np.asarray(getattr(pred, f)) for f in (name, f"{name}_low", f"{name}_high"))
        assert np.all(low <= high), name
    # At measured N the loss comes from the scratch curve: close to the true law at D_E.
    np.testing.assert_allclose(pred.loss, kaplan_loss(n, pred.d_e), rtol=2e-3)
    scalar = law.predict(1e8, 1e5)
    assert isinstance(scalar.d_t, float) and scalar.d_t_low <= scalar.d_t <= scalar.d_t_high


def test_inverse_queries_invert_the_forward_prediction(law: TransferLaw) -> None:
    target = float(law.predict(1e8, 1e5).loss)
    assert law.d_f_for_target_loss(1e8, target) == pytest.approx(1e5, rel=1e-6)
    n_needed = law.n_for_target_loss(1e5, 3.2)
    assert 1e6 < n_needed < 1e10
    kaplan = law.scratch.kaplan_law()
    assert kaplan is not None
    d_e = 1e5 + law.effective_data_transferred(n_needed, 1e5)
    assert float(np.exp(kaplan.log_loss(np.array([n_needed]), np.array([d_e])))[0]) == pytest.approx(3.2, rel=1e-6)
    assert np.isnan(law.d_f_for_target_loss(1e8, 0.5))  # below what N=1e8 can reach at any data
    assert law.exchange_rate() == pytest.approx(10 ** (law.beta / law.alpha))


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_plots_are_pngs_of_the_expected_size_and_html_inlines_them(law: TransferLaw, tmp_path: Path) -> None:
    paths = plot_law(law, tmp_path / "plots")
    pngs = [p for p in paths if p.suffix == ".png"]
    assert [p.name for p in pngs] == list(_plots.PLOTS)
    expected = (int(_plots.FIGSIZE[0] * _plots.DPI), int(_plots.FIGSIZE[1] * _plots.DPI))
    for png in pngs:
        assert png.stat().st_size > 10_000
        assert _png_size(png) == expected
    page = (tmp_path / "plots" / "index.html").read_text()
    assert page.count("data:image/png;base64,") == len(pngs)
    assert base64.b64encode(pngs[0].read_bytes()).decode() in page
    assert "alpha" in page and "src=\"http" not in page
