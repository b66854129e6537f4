"""registry/fit/compare.py on fits of synthetic runs from two known laws of one target (no MLflow): k per character,
the crossing point with its interval, the ranking on each side of it, and undetermined laws."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _fit_synth import synthetic_runs

from transfer_laws.registry.fit import fit_transfer_law
from transfer_laws.registry.fit.compare import Source, contrast, crossing, determination, k_in, law_row, rank

TEXT, MIX = (1.0e3, 0.30, 0.38), (7.9e3, 0.10, 0.38)
"""Equal betas: the true lines cross at D_F = (7.9e3 / 1e3)^(1 / 0.2) ~ 3.1e4 at every N (grid 1e3 .. 1e6)."""
TRUE_CROSSING = (MIX[0] / TEXT[0]) ** (1 / (TEXT[1] - MIX[1]))
N = 1e8
C = 3.2
"""Characters per token of the synthetic fine-tunes."""


def _fit(truth: tuple[float, float, float], seed: int, **kw) -> object:
    runs = synthetic_runs(truth, loss_noise=0.003, seed=seed, **kw)
    return fit_transfer_law(runs, bootstrap=300, seed=seed)


@pytest.fixture(scope="module")
def sources() -> dict[str, Source]:
    return {"text": Source("text", _fit(TEXT, 1), C), "mix": Source("mix", _fit(MIX, 2), C)}


def test_k_per_character_is_the_token_k_converted(sources: dict[str, Source]) -> None:
    text = sources["text"]
    k_tok, k_chr = k_in(text, "tokens"), k_in(text, "chars")
    assert k_tok.value == pytest.approx(text.fit.k)
    assert k_chr.value == pytest.approx(text.fit.k * C ** (1 - text.fit.alpha))  # k_tokens = k_chars * c^(alpha-1)
    assert k_chr.low < k_chr.value < k_chr.high and k_tok.low < k_tok.value < k_tok.high
    row = law_row(text)
    assert row["determined"] and row["finetunes_used"] > 3 and row["k_chars"]["value"] == pytest.approx(k_chr.value)
    assert row["alpha"]["low"] < TEXT[1] < row["alpha"]["high"], row["alpha"]
    assert Source("text", text.fit, None) and law_row(Source("text", text.fit, None))["k_chars"] is None


def test_crossing_point_recovers_the_truth_with_an_interval(sources: dict[str, Source]) -> None:
    c = crossing(sources["text"], sources["mix"], N, "tokens")
    assert c["d_f"]["low"] < TRUE_CROSSING < c["d_f"]["high"], (c, TRUE_CROSSING)
    assert abs(math.log(c["d_f"]["value"] / TRUE_CROSSING)) < math.log(2)
    assert c["within_data"] and c["below"] == "mix" and c["above"] == "text" and c["share_same_order"] > 0.95
    # In characters the crossing moves by c (both laws share the tokenizer): D_chars = c * D_tokens.
    in_chars = crossing(sources["text"], sources["mix"], N, "chars")
    assert in_chars["d_f"]["value"] == pytest.approx(C * c["d_f"]["value"], rel=1e-9)


def test_crossing_beyond_the_data_says_so(sources: dict[str, Source]) -> None:
    near = Source("near", _fit((1.0e3 * 10 ** 0.2, 0.10, 0.38), 3), C)  # true crossing at D_F = 10, below 1e3
    c = crossing(sources["text"], near, N, "tokens")
    assert not c["within_data"] and "beyond the data" in c["note"] and c["d_f"]["value"] < 1e2, c


@pytest.mark.parametrize(("d_f", "first"), [(1e3, "mix"), (3e3, "mix"), (3e5, "text"), (1e6, "text")])
def test_ranking_picks_the_right_source_on_each_side(sources: dict[str, Source], d_f: float, first: str) -> None:
    rows, notes = rank(list(sources.values()), N, d_f)
    assert [r.source for r in rows][0] == first
    assert rows[0].loss.value < rows[1].loss.value and "predicted best loss" in notes[0]
    assert rows[0].vs_next["than"] == rows[1].source and not rows[0].vs_next["indistinguishable"]
    assert rows[0].vs_next["d_e_ratio"]["low"] > 1 and rows[0].multiplier.value > rows[1].multiplier.value
    assert not rows[0].extrapolation


def test_at_the_crossing_the_two_are_indistinguishable(sources: dict[str, Source]) -> None:
    rows, _ = rank(list(sources.values()), N, TRUE_CROSSING)
    assert rows[0].vs_next["indistinguishable"], rows[0].vs_next
    assert rows[0].vs_next["d_e_ratio"]["low"] < 1 < rows[0].vs_next["d_e_ratio"]["high"]


def test_undetermined_law_is_never_ranked_above_a_determined_one(sources: dict[str, Source]) -> None:
    # A source whose law says it transfers 100x more, fitted on three fine-tunes: exact, so undetermined.
    runs = synthetic_runs((1e5, 0.30, 0.38), loss_noise=0.003, seed=4)
    finetunes = [r for r in runs if r.role == "finetune"]  # 7 D_F per N: two at the first N, one at the second
    kept = [r for r in runs if r.role == "scratch"] + [finetunes[0], finetunes[3], finetunes[7]]
    thin = Source("thin", fit_transfer_law(kept, bootstrap=200, seed=4), C)
    ok, why = determination(thin.fit)
    assert not ok and "3 usable fine-tunes" in why
    rows, notes = rank([thin, *sources.values()], 1e6, 1e4)
    assert [r.source for r in rows][-1] == "thin" and all(r.determined for r in rows[:-1])
    assert rows[-1].loss.value < rows[0].loss.value, "its point prediction would have won"
    assert any("thin's point prediction is the best" in n and "undetermined" in n for n in notes), notes


def test_extrapolation_is_flagged_in_decades(sources: dict[str, Source]) -> None:
    rows, _ = rank(list(sources.values()), 1e11, 1e8)
    for r in rows:
        assert any(e.startswith("N=1e+11 is 2.0 decades above") for e in r.extrapolation), r.extrapolation
        assert any(e.startswith("D_F=1e+08 is 2.0 decades above") for e in r.extrapolation), r.extrapolation


def test_contrast_answers_the_papers_three_questions(sources: dict[str, Source]) -> None:
    c = contrast(sources["text"], sources["mix"], N, 1e3, unit="chars")
    assert c["transfers_more"]["answer"] == "yes" and c["transfers_more"]["d_t_ratio"]["low"] > 1
    assert c["alpha_lower"]["answer"] == "yes"
    diff = c["alpha_lower"]["difference"]
    assert diff["low"] < MIX[1] - TEXT[1] < diff["high"]
    assert c["beta_same"]["answer"] == "consistent" and c["beta_same"]["difference"]["low"] < 0
    # Swapped roles flip the answers: the comparison is not hard-wired to say yes.
    swapped = contrast(sources["mix"], sources["text"], N, 1e3, unit="chars")
    assert swapped["transfers_more"]["answer"] == "no" and swapped["alpha_lower"]["answer"] == "no"


def test_unit_conversion_needs_characters() -> None:
    fit = _fit(TEXT, 5, n_grid=(1e6, 1e8), scratch_d=tuple(np.geomspace(1e3, 1e13, 21)))
    with pytest.raises(ValueError, match="logged no characters"):
        rank([Source("text", fit, None)], N, 1e4, unit="chars")


def test_map_document_degrades_without_characters_or_fits(sources: dict[str, Source]) -> None:
    from transfer_laws.registry.transfer_map import TargetLaw, target_map

    laws = [TargetLaw("mix-to-python", "mix", "1", sources["mix"].fit),  # its runs logged no characters
            TargetLaw("text-to-python", "text", "1", sources["text"].fit),
            TargetLaw("code-to-python", "code", None, None, error="no version yet")]
    doc = target_map(laws, n=N, d_f=3e4 * C, unit="chars")
    assert doc["unit"] == "tokens" and any("logged no characters" in n for n in doc["notes"])
    assert [r["source"] for r in doc["ranking"]] and {law["source"] for law in doc["laws"]} == {"mix", "text", "code"}
    assert doc["laws"][2]["error"] == "no version yet" and "alpha" not in doc["laws"][2]
    empty = target_map([laws[2]])
    assert empty["n"] is None and "ranking" not in empty and "lines" not in empty


def test_the_papers_two_laws_compare_as_table_1_says() -> None:
    """Fits of synthetic runs from Table 1's text -> python and 50/50 mix -> python (D_F in characters here, c = 1):
    mix transfers more at small D_F, its alpha is lower, beta is the same, and the lines meet far beyond the data
    (at ~2.6e12 by the table's own numbers)."""
    from _fit_synth import MIX_TO_PYTHON, TEXT_TO_PYTHON

    text = Source("text", _fit(TEXT_TO_PYTHON, 6), 1.0)
    mix = Source("mix", _fit(MIX_TO_PYTHON, 7), 1.0)
    c = contrast(text, mix, N, 1e3, unit="chars")
    assert [c[q]["answer"] for q in ("transfers_more", "alpha_lower", "beta_same")] == ["yes", "yes", "consistent"]
    met = crossing(text, mix, N, "chars")
    truth = (MIX_TO_PYTHON[0] / TEXT_TO_PYTHON[0]) ** (1 / (TEXT_TO_PYTHON[1] - MIX_TO_PYTHON[1]))
    assert not met["within_data"] and met["below"] == "mix" and "above the D_F" in met["note"]
    assert abs(math.log10(met["d_f"]["value"] / truth)) < 1, (met["d_f"], truth)


def test_an_undetermined_law_shows_its_intervals_and_no_band_that_hides_the_lines(sources: dict[str, Source]) -> None:
    # On the page, a bare point value would read as a precise one; a band over the whole plot would hide every line.
    from transfer_laws.registry.fit._svg_map import lines_chart, params_chart
    from transfer_laws.registry.fit.compare import d_t_line

    runs = synthetic_runs((1e5, 0.30, 0.38), loss_noise=0.003, seed=4)
    finetunes = [r for r in runs if r.role == "finetune"]
    kept = [r for r in runs if r.role == "scratch"] + [finetunes[0], finetunes[3], finetunes[7]]
    thin = Source("thin", fit_transfer_law(kept, bootstrap=200, seed=4), C)
    row = law_row(thin)
    assert not row["determined"]
    assert row["alpha"]["low"] <= row["alpha"]["value"] <= row["alpha"]["high"]
    assert math.isfinite(row["k_tokens"]["low"]) and math.isfinite(row["beta"]["high"])
    grid = np.geomspace(1e3, 1e6, 12)
    doc = {"target": "python", "unit": "tokens", "n": N,
           "laws": [law_row(thin), law_row(sources["text"])],
           "lines": {"thin": d_t_line(thin, N, grid, "tokens"), "text": d_t_line(sources["text"], N, grid, "tokens")}}
    svg = lines_chart(doc)
    assert svg.count('class="band"') == 1, "only the determined law's band is drawn"
    assert "No band is drawn for an undetermined law" in svg and "thin (" in svg
    alpha = params_chart(doc, "alpha")
    assert alpha.count('class="whisker"') == 2 and 'stroke-dasharray="1 3"' in alpha
    assert "undetermined law" in alpha
