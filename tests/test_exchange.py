"""The headline "10x N is worth X x fine-tuning data [low, high]": its interval comes from the bootstrap draws, and
when alpha's interval includes 0 the ratio is undetermined everywhere it is printed (summary, card, report, JSON)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from _fit_synth import TEXT_TO_PYTHON, synthetic_runs

from transfer_laws.registry.fit import fit_transfer_law
from transfer_laws.registry.fit._html import explanation
from transfer_laws.registry.law_card import _exchange_sentence
from transfer_laws.scripts.refit import _exchange


@pytest.fixture(scope="module")
def law():  # a TransferLaw with alpha well away from 0
    runs = synthetic_runs(TEXT_TO_PYTHON, loss_noise=0.01, n_grid=(1e6, 1e7, 1e8),
                          scratch_d=tuple(np.geomspace(1e6, 1e12, 13)), d_f=(1e4, 1e5, 1e6), seed=3)
    return fit_transfer_law(runs, d_e_method="kaplan", bootstrap=300)


def test_the_interval_is_the_draws_percentiles(law) -> None:
    low, high = law.exchange_interval()
    ratio = law.draws["beta"] / law.draws["alpha"]
    ratio = ratio[np.isfinite(ratio)]
    assert low == pytest.approx(10 ** np.percentile(ratio, 2.5))
    assert high == pytest.approx(10 ** np.percentile(ratio, 97.5))
    assert low < law.exchange_rate() < high
    text = law.exchange_headline()
    assert f"{law.exchange_rate():.3g}x" in text and f"[{low:.3g}x, {high:.3g}x]" in text
    assert text in law.summary()
    assert f"{high:.3g}" in _exchange_sentence(law).replace("×", "")
    doc = _exchange(law)
    assert doc["determined"] and doc["low"] == low and doc["high"] == high and doc["rate"] == law.exchange_rate()
    assert "95% interval" in explanation(law, "tokens")


def test_alpha_interval_through_zero_makes_the_ratio_undetermined(law) -> None:
    loose = replace(law, intervals={**law.intervals, "alpha": (-0.2, 0.5)})
    assert loose.exchange_interval() is None
    text = loose.exchange_headline()
    assert "undetermined" in text and f"{loose.exchange_rate():.3g}x" not in text
    assert "undetermined" in loose.summary()
    assert "undetermined" in _exchange_sentence(loose)
    assert "undetermined" in explanation(loose, "tokens")
    doc = _exchange(loose)
    assert doc == {"determined": False, "rate": None, "low": None, "high": None, "text": text}
