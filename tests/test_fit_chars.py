"""k per character, the paper's unit: every law is fitted in tokens and converted with the characters per token
measured on its runs (``registry/fit/_chars.py``); a law whose runs logged no characters says so instead."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from _fit_synth import TEXT_TO_PYTHON, synthetic_runs

from transfer_laws.registry.fit import RunResult, TransferLaw, fit_transfer_law
from transfer_laws.registry.law_card import version_description, version_tags
from transfer_laws.registry.schema import LAW_TAG_K_PER_CHAR

C = 3.2
"""Characters per token of the synthetic target."""


def _in_tokens(runs_in_chars: list[RunResult], jitter: float, seed: int = 0) -> list[RunResult]:
    """Runs whose true data unit is characters, as training logs them: D in tokens (characters / c, c drawn per run
    within +-``jitter`` of ``C``, as a budget's documents vary) with the characters beside them."""
    rng = np.random.default_rng(seed)
    out = []
    for r in runs_in_chars:
        chars = r.d_f_tokens  # synthetic_runs' data unit is the truth's: characters here
        c = C * (1.0 + rng.uniform(-jitter, jitter))
        out.append(dataclasses.replace(r, d_f_tokens=float(round(chars / c)), d_f_chars=float(chars)))
    return out


@pytest.fixture(scope="module")
def law() -> TransferLaw:
    truth_in_chars = synthetic_runs(TEXT_TO_PYTHON, 0.002, seed=11, d_f=tuple(np.geomspace(3e3, 3e6, 7)))
    return fit_transfer_law(_in_tokens(truth_in_chars, jitter=0.02), bootstrap=300, seed=1)


def test_k_per_character_recovers_the_truth_in_characters(law: TransferLaw) -> None:
    k_chars, alpha, beta = TEXT_TO_PYTHON
    per_char = law.k_per_char()
    assert per_char.value is not None and per_char.low is not None and per_char.high is not None
    assert per_char.low <= k_chars <= per_char.high, (per_char.low, k_chars, per_char.high)
    # k per token is a different number (D_T,chars = c D_T,tokens): far outside the interval in characters.
    assert law.k == pytest.approx(per_char.value * C ** (alpha - 1), rel=0.03)
    assert not per_char.low <= law.k <= per_char.high
    # alpha and beta do not depend on the unit: the fit in tokens recovers the truth in characters.
    for name, true in (("alpha", alpha), ("beta", beta)):
        low, high = law.intervals[name]
        assert low <= true <= high, name
    c = per_char.chars_per_token
    assert c is not None and c.value == pytest.approx(C, rel=0.01)
    assert c.runs == c.of == len(law.input_run_ids)
    assert C * 0.97 < c.low < c.high < C * 1.03 and not any("characters per token" in w for w in law.warnings)


def test_k_per_character_is_reported_with_its_convention(law: TransferLaw, tmp_path: Path) -> None:
    per_char = law.k_per_char()
    law.save(tmp_path)
    record = json.loads((tmp_path / "law.json").read_text())["k_per_char"]
    assert record["value"] == pytest.approx(per_char.value) and record["low"] == pytest.approx(per_char.low)
    c = per_char.chars_per_token
    assert "c^(1 - alpha)" in record["convention"] and c is not None and record["chars_per_token"]["runs"] == c.runs
    loaded = TransferLaw.load(tmp_path)
    assert loaded.chars_per_token == law.chars_per_token and loaded.k_per_char() == per_char
    assert version_tags(law)[LAW_TAG_K_PER_CHAR] == per_char.text()
    card = version_description("text-to-python", law)
    row = next(line for line in card.splitlines() if line.startswith("| k (D_F in characters)"))
    assert row.endswith("| 1.9e+04 |")  # the paper's k sits beside our k per character ...
    token_row = next(line for line in card.splitlines() if line.startswith("| k (D_F in tokens)"))
    assert "1.9e+04" not in token_row  # ... never beside k per token
    assert "characters per token" in card and f"k per character (the paper's unit) = {per_char.text()}" in law.summary()


def test_a_law_whose_runs_logged_no_characters_says_so(tmp_path: Path) -> None:
    law = fit_transfer_law(synthetic_runs(TEXT_TO_PYTHON, 0.002, seed=3), bootstrap=50)
    per_char = law.k_per_char()
    assert law.chars_per_token is None and per_char.value is None and "logged no character counts" in per_char.why
    assert version_tags(law)[LAW_TAG_K_PER_CHAR].startswith("n/a (its runs logged no character counts")
    assert "| k (D_F in characters) | n/a |" in version_description("text-to-python", law)
    law.save(tmp_path)
    record = json.loads((tmp_path / "law.json").read_text())["k_per_char"]
    assert record["value"] is None and "logged no character counts" in record["why"]


def test_runs_without_a_character_count_are_left_out_of_c_not_of_the_fit() -> None:
    runs = _in_tokens(synthetic_runs(TEXT_TO_PYTHON, 0.002, seed=3), jitter=0.0)
    without = {r.run_id for r in runs[::5]}
    runs = [dataclasses.replace(r, d_f_chars=None) if r.run_id in without else r for r in runs]
    law = fit_transfer_law(runs, bootstrap=0)
    c = law.chars_per_token
    assert c is not None and c.runs == len(runs) - len(without) and c.of == len(runs)
    assert c.value == pytest.approx(C, rel=1e-3)
    assert set(law.input_run_ids) >= without  # the runs still count in the fit
    assert f"over {c.runs} of {c.of} runs" in law.k_per_char().basis()


def test_runs_that_disagree_on_characters_per_token_are_warned_about() -> None:
    runs = _in_tokens(synthetic_runs(TEXT_TO_PYTHON, 0.002, seed=3), jitter=0.2)
    law = fit_transfer_law(runs, bootstrap=0)
    assert any("characters per token range from" in w for w in law.warnings)


def test_the_papers_law_is_its_own_k_per_character() -> None:
    paper = TransferLaw.from_coefficients(*TEXT_TO_PYTHON, unit="chars")
    per_char = paper.k_per_char()
    assert (per_char.value, per_char.low, per_char.high) == (1.9e4, 1.9e4, 1.9e4)
    assert per_char.chars_per_token is None
