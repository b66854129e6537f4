"""Every fitted law carries its model checks (law.json round trip, old folders load with none) and a verdict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _fit_synth import TEXT_TO_PYTHON, irreducible_loss, kaplan_loss, synthetic_runs

from transfer_laws.registry.fit import FitError, TransferLaw, fit_transfer_law

# The calibration benchmark's sparse grid: 3 N x 6 scratch D, 3 D_F.
SPARSE = {"n_grid": (1e6, 10**7.5, 1e9), "scratch_d": tuple(np.geomspace(1e4, 1e11, 6)), "d_f": (1e3, 10**4.5, 1e6)}
RUNS = synthetic_runs(TEXT_TO_PYTHON, 0.001, seed=3, n_grid=(1e6, 1e7, 1e8), d_f=(1e3, 1e4, 1e5))


def test_checks_travel_in_law_json_and_old_folders_load_with_none(tmp_path: Path) -> None:
    law = fit_transfer_law(RUNS, bootstrap=100)
    keys = {"estimator", "candidates", "tie_rule", "scratch_residuals", "law_residuals", "low_data", "verdict",
            "needs"}
    assert keys <= set(law.checks)
    assert law.checks["law_residuals"]["n"] == sum(p.used for p in law.points)
    assert law.checks["verdict"] and all(isinstance(s, str) for s in law.checks["verdict"])
    json.dumps(law.checks, allow_nan=False)  # strict JSON: readers in other languages can parse it
    folder = law.save(tmp_path / "fit")
    assert TransferLaw.load(folder).checks == json.loads(json.dumps(law.checks))
    data = json.loads((folder / "law.json").read_text())
    del data["checks"]
    (folder / "law.json").write_text(json.dumps(data))
    assert TransferLaw.load(folder).checks == {}


def _fit_family(family: str, seed: int, noise: float = 0.002, bootstrap: int = 0) -> TransferLaw:
    law = irreducible_loss if family == "irreducible" else kaplan_loss
    runs = synthetic_runs(TEXT_TO_PYTHON, noise, seed=seed, loss_law=law, **SPARSE)
    return fit_transfer_law(runs, bootstrap=bootstrap, seed=seed)


@pytest.mark.parametrize("family", ["kaplan", "irreducible"])
def test_auto_picks_the_true_form_and_the_wrong_form_is_not_chosen(family: str) -> None:
    law = _fit_family(family, seed=1)
    table = {c["method"]: c for c in law.checks["candidates"]}
    assert law.checks["estimator"] == family == law.scratch.method
    wrong = "kaplan" if family == "irreducible" else "irreducible"
    assert table[wrong]["cv_error"] > 2 * table[family]["cv_error"]
    assert table[family]["chosen"] and not table[wrong]["chosen"]
    assert law.alpha == pytest.approx(TEXT_TO_PYTHON[1], abs=0.03)
    assert law.beta == pytest.approx(TEXT_TO_PYTHON[2], abs=0.06)
    if family == "irreducible":
        # Forcing the wrong form is what the choice protects against: beta far off.
        assert abs(table["kaplan"]["beta"] - TEXT_TO_PYTHON[2]) > 0.1


def test_intervals_cover_the_truth_on_a_small_seeded_set() -> None:
    """12 seeds of the sparse irreducible-loss grid at 0.5% noise: 95% intervals should miss about once in 20."""
    fits = [_fit_family("irreducible", seed, noise=0.005, bootstrap=200) for seed in range(12)]
    for name, truth in (("alpha", TEXT_TO_PYTHON[1]), ("beta", TEXT_TO_PYTHON[2])):
        estimates = np.array([getattr(f, name) for f in fits])
        covered = sum(f.intervals[name][0] <= truth <= f.intervals[name][1] for f in fits)
        assert covered >= 10, (name, covered)
        ideal = 2 * 1.96 * np.sqrt(np.mean((estimates - truth) ** 2))
        widths = [f.intervals[name][1] - f.intervals[name][0] for f in fits]
        assert np.median(widths) < 2.5 * ideal, (name, np.median(widths), ideal)


def test_a_thin_fit_says_which_runs_would_fix_it() -> None:
    near = synthetic_runs(TEXT_TO_PYTHON, 0.005, seed=2, n_grid=(1e8, 1.05e8, 1.1e8), d_f=(1e3, 1e4, 1e5),
                          scratch_d=SPARSE["scratch_d"])
    law = fit_transfer_law(near, bootstrap=200)
    assert law.checks["verdict"][0].startswith("alpha is determined to")
    assert "beta's interval includes 0: more N span needed (today 1.1x" in law.checks["verdict"][0]
    assert any(need.startswith("N span: today 1.1x") for need in law.checks["needs"])
    with pytest.raises(FitError, match="Needs: fine-tune and scratch runs at a second model size"):
        fit_transfer_law([r for r in near if r.role == "scratch" or r.n_params == 1e8], bootstrap=10)


def test_refit_metrics_and_report_carry_the_checks() -> None:
    from transfer_laws.registry.refit import law_metrics

    law = _fit_family("kaplan", seed=3, bootstrap=50)
    metrics = law_metrics(law)
    assert {"cv_error_kaplan", "cv_error_irreducible", "cv_error_interpolate", "runner_up_alpha", "runner_up_beta",
            "scratch_resid_rms", "law_resid_rms"} <= set(metrics)
    runner_up = min((c for c in law.checks["candidates"] if not c["chosen"]), key=lambda c: c["cv_error"])
    assert metrics["runner_up_beta"] == runner_up["beta"]
