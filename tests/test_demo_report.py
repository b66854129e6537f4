"""The demo says plainly what its runs show, either way; `transfer-laws report` writes a page a reviewer can read."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from transfer_laws.scripts import demo


def _run(loss: float) -> SimpleNamespace:
    return SimpleNamespace(best_test_loss=loss)


def _results(gain_small: float, gain_large: float) -> dict:
    return {
        "2x32": {"finetune": {2000: _run(6.8 - gain_small)}, "scratch": {3000: _run(6.8)}, "n_params": 25_472},
        "2x64": {"finetune": {2000: _run(6.8 - gain_large)}, "scratch": {3000: _run(6.8)}, "n_params": 100_096},
    }


def test_findings_compare_with_scratch_on_at_least_as_much_data(capsys: pytest.CaptureFixture[str]) -> None:
    demo._print_findings(_results(0.3, 0.5))
    out = capsys.readouterr().out
    assert "does beat training from scratch" in out and "2 of 2" in out
    assert "gain from pretraining grows with N" in out


def test_findings_say_so_when_pretraining_loses(capsys: pytest.CaptureFixture[str]) -> None:
    demo._print_findings(_results(-0.2, -0.1))
    out = capsys.readouterr().out
    assert "does NOT beat" in out and "0 of 2" in out


@pytest.mark.parametrize(("alpha", "alpha_interval", "said"), [
    (0.18, (0.1, 0.3), "D_T grows with D_F on these runs"),
    (0.18, (-0.5, 0.9), "suggest that D_T grows with D_F"),  # an interval through 0 decides nothing
    (-0.3, (-0.9, 0.2), "do NOT show that D_T grows with D_F"),
])
def test_law_verdicts_follow_the_intervals(alpha: float, alpha_interval: tuple[float, float], said: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    fit = SimpleNamespace(summary=lambda: "law summary", alpha=alpha, beta=0.38,
                          intervals={"alpha": alpha_interval, "beta": (0.2, 0.5)})
    refit = SimpleNamespace(fit=fit, status="registered", law="text-to-python", version="1", reason=None)
    demo._print_law("text-to-python", "sqlite:///home/mlflow.db", refit)
    out = capsys.readouterr().out
    assert said in out
    assert sum(phrase in out for phrase in ("D_T grows with D_F on these runs", "suggest that D_T grows with D_F",
                                            "do NOT show that D_T grows with D_F")) == 1
    assert "D_T grows with N on these runs (beta = 0.380 [0.2, 0.5]" in out
    assert "transfer-laws serve --backend-store-uri sqlite:///home/mlflow.db" in out
    assert "workflowType=machine_learning" in out and "/transfer-laws/#law-text-to-python" in out


def test_a_law_already_covering_the_runs_is_printed_from_its_version(
        sqlite_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    # The demo's last refit finds @latest covering every run ("unchanged"): the law is that version's, not "not fitted".
    from law_runs import LAW, land_finetunes, land_scratch_runs
    from mlflow import MlflowClient

    from transfer_laws.registry.refit import refit_law

    client = MlflowClient(sqlite_uri, sqlite_uri)
    exp = client.create_experiment("runs")
    land_scratch_runs(client, exp)
    land_finetunes(client, exp, 9)
    first = refit_law(LAW, tracking_uri=sqlite_uri, bootstrap=30, plots=False)
    again = refit_law(LAW, tracking_uri=sqlite_uri, bootstrap=30, plots=False)
    assert (again.status, again.fit) == ("unchanged", None)
    demo._print_law(LAW, sqlite_uri, [again])
    out = capsys.readouterr().out
    assert "could not be fitted" not in out
    assert f"alpha = {first.fit.alpha:.4f}" in out and f"models:/transfer-law-{LAW}@latest" in out


def test_no_fit_is_reported_with_its_reason(capsys: pytest.CaptureFixture[str]) -> None:
    refit = SimpleNamespace(fit=None, status="failed", law="text-to-python", version=None, reason="2 usable points")
    demo._print_law("text-to-python", "http://server:5000", refit)
    assert "could not be fitted from these runs: 2 usable points" in capsys.readouterr().out


def test_report_writes_print_plots_and_a_page_that_explains_the_law(sqlite_uri: str, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from law_runs import LAW, land_finetunes, land_scratch_runs
    from mlflow import MlflowClient

    from transfer_laws.registry.fit._svg_plots import SVG_PLOTS
    from transfer_laws.registry.refit import refit_law
    from transfer_laws.scripts import report

    client = MlflowClient(sqlite_uri, sqlite_uri)
    exp = client.create_experiment("runs")
    land_scratch_runs(client, exp)
    finetunes = land_finetunes(client, exp, 12)
    assert refit_law(LAW, tracking_uri=sqlite_uri, bootstrap=40).version == "1"
    out = tmp_path / "report"
    assert report.run(report.Args(law=LAW, out=out)) == 0
    assert not list(out.glob("*.png")) and set(SVG_PLOTS) <= {p.name for p in out.glob("*.svg")}
    page = (out / "index.html").read_text()
    assert "<pre>" not in page and "effective data transferred" in page and "version 1" in page
    assert all(rid in page for rid in finetunes), "every fine-tune is listed"
    assert page.count("<svg") == len(SVG_PLOTS) and "data:image" not in page
    # The law's charts, the page, and the calibration charts (leave-one-out always; forecasts once a run has one).
    svgs = sorted(p.name for p in out.glob("*.svg") if p.name not in SVG_PLOTS)
    assert "leave_one_out.svg" in svgs and set(svgs) <= {"leave_one_out.svg", "forecasts.svg"}
    assert f"wrote {len(SVG_PLOTS) + 1 + len(svgs)} files" in capsys.readouterr().out
