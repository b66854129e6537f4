"""Save/load round trip, predictions with intervals, inverse queries, and the plots."""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path

import numpy as np
import pytest
from _fit_synth import TEXT_TO_PYTHON, kaplan_loss, synthetic_runs

from transfer_laws.registry import TransferLaw, fit_transfer_law, plot_law
from transfer_laws.registry.fit import _plots, _svg_chart, _svg_plots

RUNS = synthetic_runs(TEXT_TO_PYTHON, 0.001, seed=7, d_f=(1e3, 1e4, 1e5, 1e6))


@pytest.fixture(scope="module")
def law() -> TransferLaw:
    return fit_transfer_law(RUNS, bootstrap=300, seed=2)


@pytest.mark.parametrize("method", ["interpolate", "kaplan"])
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


def test_the_report_explains_the_law_lists_its_runs_and_inlines_its_charts(law: TransferLaw, tmp_path: Path) -> None:
    paths = plot_law(law, tmp_path / "plots", title="Transfer law text-to-python")
    assert [p.name for p in paths] == [*_svg_plots.SVG_PLOTS, "index.html"]
    page = (tmp_path / "plots" / "index.html").read_text()
    assert page.count("<svg") == len(_svg_plots.SVG_PLOTS) and "data:image" not in page
    assert "src=\"http" not in page and "<pre>" not in page
    assert "effective data transferred" in page and f"{law.alpha:.3g}" in page
    assert page.count("<tr class='used'>") == sum(p.used for p in law.points)
    for caption in _svg_plots.SVG_CAPTIONS.values():
        assert html.escape(caption, quote=True) in page
    # The paper's k is per character: here its runs logged none, so the page says so beside it.
    assert "k (D<sub>F</sub> in characters)</td><td class='num'>n/a" in page and "logged no character" in page


def test_one_colour_per_model_size_in_every_plot(law: TransferLaw) -> None:
    colours = _plots.law_colours(law)
    sizes = {_plots.n_key(p.n) for p in law.points} | {_plots.n_key(n) for n in law.scratch.levels}
    assert set(colours) == sizes and len(set(colours.values())) == len(sizes)
    assert not {"#F0E442", "#FDE725"} & set(colours.values()), "no yellow on white"
    assert colours[float(np.exp(np.log(law.points[0].n)))] == colours[law.points[0].n]  # ln-round-tripped N
    assert len(set(_plots.n_colours(np.geomspace(1e5, 1e9, 12)).values())) == 12


def test_svg_plots_draw_the_law_bands_gap_and_every_size(law: TransferLaw, tmp_path: Path) -> None:
    paths = plot_law(law, tmp_path / "svg")
    svgs = {p.name: p.read_text() for p in paths if p.suffix == ".svg"}
    assert list(svgs) == list(_svg_plots.SVG_PLOTS)
    loss = svgs["loss_vs_data.svg"]
    gap = _plots.gap_point(law)
    assert gap is not None and 'class="gap"' in loss and "D_T = " in loss
    assert loss.count('class="scratch-curve"') == law.scratch.levels.size
    colours = _plots.law_colours(law)
    for n in {p.n for p in law.points if p.used}:
        assert colours[n] in svgs["d_t_vs_d_f.svg"]
    assert svgs["d_t_vs_d_f.svg"].count('class="band"') == len({p.n for p in law.points if p.used})
    assert "tokens)" in svgs["d_t_vs_d_f.svg"] and "nats/token" in loss
    assert all('class="caption"' in svg for svg in svgs.values()), "a logged chart reads alone: caption included"
    index = (tmp_path / "svg" / "index.html").read_text()
    assert index.count("<svg") == len(svgs) and "data:image/png" not in index


def test_plot_bands_match_the_laws_prediction_intervals(law: TransferLaw) -> None:
    grid = np.geomspace(1e3, 1e6, 20)
    d_t, draws = _plots.d_t_draws(law, 1e7, grid)
    low, high = _plots.band(draws)
    pred = law.predict(np.full_like(grid, 1e7), grid)
    np.testing.assert_allclose(d_t, pred.d_t)
    np.testing.assert_allclose(low, pred.d_t_low)
    np.testing.assert_allclose(high, pred.d_t_high)


def test_drawing_subsamples_evenly_but_keeps_small_sets() -> None:
    assert _plots.drawn(list(range(10)), 20) == list(range(10))
    picked = _plots.drawn(list(range(1000)), 5)
    assert picked == [0, 250, 500, 749, 999] or (picked[0], picked[-1], len(picked)) == (0, 999, 5)


def test_log_ticks_are_real_decades_or_readable_steps() -> None:
    major, minor = _svg_chart.Axis(3e4, 2e7, "D").ticks()
    assert [label for _, label in major] == ["10\u2075", "10\u2076", "10\u2077"]
    assert 2e5 in [round(v) for v in minor]
    narrow, _ = _svg_chart.Axis(3.3, 5.6, "loss").ticks()
    assert len(narrow) >= 4 and all(3.3 <= v <= 5.6 for v, _ in narrow)
    assert _svg_chart.number_label(25_472) == "25,500" and _svg_chart.number_label(1e9) == "10\u2079"
