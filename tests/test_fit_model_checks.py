"""Every fitted law carries its model checks (law.json round trip, old folders load with none) and a verdict."""

from __future__ import annotations

import json
from pathlib import Path

from _fit_synth import TEXT_TO_PYTHON, synthetic_runs

from transfer_laws.registry.fit import TransferLaw, fit_transfer_law

RUNS = synthetic_runs(TEXT_TO_PYTHON, 0.001, seed=3, n_grid=(1e6, 1e7, 1e8), d_f=(1e3, 1e4, 1e5))


def test_checks_travel_in_law_json_and_old_folders_load_with_none(tmp_path: Path) -> None:
    law = fit_transfer_law(RUNS, bootstrap=100)
    keys = {"estimator", "candidates", "tie_rule", "scratch_residuals", "law_residuals", "low_data", "verdict",
            "needs"}
    assert keys <= set(law.checks)
    assert law.checks["law_residuals"]["n"] == sum(p.used for p in law.points)
    assert law.checks["verdict"] and all(isinstance(s, str) for s in law.checks["verdict"])
    folder = law.save(tmp_path / "fit")
    assert TransferLaw.load(folder).checks == json.loads(json.dumps(law.checks))
    data = json.loads((folder / "law.json").read_text())
    del data["checks"]
    (folder / "law.json").write_text(json.dumps(data))
    assert TransferLaw.load(folder).checks == {}
