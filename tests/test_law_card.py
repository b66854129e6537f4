"""The law in MLflow's own pages: a version's description and tags, the law model's and experiments' descriptions,
the declared signature; the reader still reads runs logged before scratch data got its own name."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import warnings

import pytest
from _fit_synth import TEXT_TO_PYTHON, synthetic_runs
from law_runs import DIGEST, LAW, finetune_grid, finetune_loss, land_run, scratch_loss
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from transfer_laws.registry.experiment_view import RUNS_VIEW_ID, SAVED_VIEW_PREFIX, runs_view_link
from transfer_laws.registry.fit import TransferLaw, fit_transfer_law
from transfer_laws.registry.law_card import (
    DESCRIPTION_LIMIT,
    PAPER_TABLE_1,
    law_model_description,
    law_model_note,
    refit_run_note,
    sig3,
    version_description,
    version_tags,
)
from transfer_laws.registry.schema import (
    EXPERIMENT_KIND_TRAINING,
    LAW_PAGE_PATH,
    LAW_TAG_WARNINGS,
    METRIC_BEST_TEST_LOSS,
    METRIC_N,
    MLFLOW_EXPERIMENT_KIND,
    MLFLOW_NOTE,
    PARAM_D_TOKENS,
    PARAM_N,
    REFIT_EXPERIMENT,
    ROLE_FINETUNE,
    ROLE_SCRATCH,
    TAG_ROLE,
    TAG_TARGET,
    TAG_TOKENIZER,
    law_model_name,
)
from transfer_laws.registry.tracking import ensure_experiment


@pytest.fixture(scope="module")
def fit() -> object:
    law = fit_transfer_law(synthetic_runs(TEXT_TO_PYTHON, loss_noise=0.01), d_e_method="interpolate", bootstrap=50)
    law.checks = {"estimator": "interpolate", "verdict": ["beta > 0 at 95%", "residuals look flat"],
                  "candidates": [{"method": "interpolate", "cv_error": 0.0123, "alpha": 0.2, "beta": 0.4,
                                  "chosen": True}], "needs": ["a fourth N"]}
    law.warnings = [*law.warnings, "only 4 N values: beta is loosely pinned"]
    return law


def test_tags_carry_the_numbers_to_three_digits(fit: object) -> None:
    tags = version_tags(fit)
    for name in ("k", "alpha", "beta"):
        value, low, high = (float(x) for x in re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", tags[name]).groups())
        assert (value, low, high) == pytest.approx((getattr(fit, name), *fit.intervals[name]), rel=5e-3)
        assert tags[name].split(" ")[0] == f"{getattr(fit, name):.3g}"
    assert tags[LAW_TAG_WARNINGS] == str(len(fit.warnings))
    assert tags["transfer.verdict"] == "beta > 0 at 95%"


def test_description_reads_the_law_its_uncertainty_and_warnings(fit: object) -> None:
    text = version_description(LAW, fit)
    first = text.splitlines()[0]  # what MLflow's version list shows: plain text, the exponents first
    assert first.startswith(f"α = {sig3(fit.alpha)} [") and "D_T = k · D_F^α · N^β" in first
    assert f"{len(fit.warnings)} warning(s)" in first and "*" not in first
    paper = PAPER_TABLE_1[LAW]
    row = next(line for line in text.splitlines() if line.startswith("| β |"))
    lo, hi = fit.intervals["beta"]
    assert row == f"| β | {sig3(fit.beta)} | [{sig3(lo)}, {sig3(hi)}] | {paper['beta']:.3g} |"
    assert "only 4 N values: beta is loosely pinned" in text and "a fourth N" in text
    assert "Verdict: **beta > 0 at 95%**" in text and "| interpolate | 0.0123 |" in text
    used = sum(p.used for p in fit.points)
    assert f"{used} of {len(fit.points)} fine-tunes used" in text
    assert f"]({LAW_PAGE_PATH}#law-{LAW})" in text
    assert f"({LAW_PAGE_PATH}#law-{LAW})" in law_model_description(LAW)
    assert f"({LAW_PAGE_PATH}#map-python)" in law_model_description(LAW), "the model points at its target's map"
    assert "transfer-laws choose --target python" in law_model_description(LAW)
    assert version_description("code-to-python", fit).count("Table 1") == 0  # no paper row for an unknown law
    assert f"A 10× larger N is worth {sig3(10 ** (fit.beta / fit.alpha))}× the fine-tuning data" in text
    # MLflow's Markdown renders "[a] (b)" as a link to "b" when b has no space: the exchange rate's interval was
    # one, to "10^(β/α" (the browser newcomer test saw it). "[a, b] (95% intervals)" stays text.
    for card in (text, law_model_description(LAW), refit_run_note(LAW, "3", fit), law_model_note(LAW, "3", fit)):
        assert not re.search(r"\] ?\(\S*\)", card.replace("](", "")), card
    from dataclasses import replace

    assert "not meaningful here (α ≤ 0)" in version_description(LAW, replace(fit, alpha=-1.04))


def test_description_fits_mlflows_limit_and_names_exclusions(fit: object) -> None:
    class Inputs:
        excluded = {f"run{i:04d}" + "x" * 24: "missing D_F_tokens " * 20 for i in range(300)}

    text = version_description(LAW, fit, Inputs())
    assert len(text) <= DESCRIPTION_LIMIT
    assert "](#/runs/run0000" in text and "more (see `inputs.json`)" in text
    assert "?workflowType=machine_learning)" in text  # the run links open MLflow's Model-training view
    assert text.rstrip().endswith("used and excluded).")  # the law page link survives
    from dataclasses import replace

    huge = version_description(LAW, replace(fit, warnings=["w" * 900] * 9))
    assert len(huge) <= DESCRIPTION_LIMIT and "cut to fit" in huge and f"#law-{LAW}" in huge


def test_excluded_run_links_name_the_experiment(fit: object) -> None:
    # MLflow redirects #/runs/<id> to the run's experiment without the query: a browser that last chose GenAI then
    # opened the run as an "Evaluations" page. The reader knows each run's experiment; the link names it.
    class Inputs:
        excluded = {"run-a": "missing D_F_tokens"}
        run_experiments = {"run-a": "7"}

    text = version_description(LAW, fit, Inputs())
    assert "](#/experiments/7/runs/run-a?workflowType=machine_learning)" in text
    assert "](#/runs/" not in text


def test_description_says_where_the_law_holds() -> None:
    import numpy as np
    from _fit_synth import smooth_bend

    grid = {"n_grid": tuple(np.geomspace(1e6, 1e9, 5)), "scratch_d": tuple(np.geomspace(1e3, 1e13, 25)),
            "d_f": tuple(np.geomspace(1e3, 1e6, 4))}
    bent = fit_transfer_law(synthetic_runs(TEXT_TO_PYTHON, 0.002, seed=4, bend=smooth_bend(10**5.7), **grid),
                            bootstrap=50)
    text = version_description(LAW, bent)
    assert "**Where the law holds.** D_F in tokens" in text and "curves beyond the noise" not in text
    rows = [line for line in text.splitlines() if line.startswith("| 1e+06 |") or line.startswith("| 1e+09 |")]
    assert rows and all(row.endswith("| 1e+03 – 1e+05 | 1e+06 |") for row in rows), rows
    assert "past the low-data regime" in text  # the excluded points and the warning say why
    straight = fit_transfer_law(synthetic_runs(TEXT_TO_PYTHON, 0.002, seed=4, **grid), bootstrap=50)
    assert "| 1e+03 – 1e+06 | not seen |" in version_description(LAW, straight)


def test_no_checks_yet_still_describes(fit: TransferLaw) -> None:
    # a fit folder written before checks and the characters per token existed
    old = dataclasses.replace(fit, intervals={"k": (math.nan, math.nan)}, checks={}, chars_per_token=None,
                              settings={"unit": "tokens", "d_e_method": "interpolate"})
    text = version_description(LAW, old)
    assert "estimator: `interpolate`" in text and "[n/a, n/a]" in text
    assert "| k (D_F in characters) | n/a |" in text and "logged no character counts" in text


def test_refit_version_has_description_tags_and_signature(sqlite_uri: str, caplog: pytest.LogCaptureFixture) -> None:
    """Scratch runs logged both ways (``D_tokens`` now, ``D_F_tokens`` before) feed the law; the version MLflow
    shows carries the law; no signature warning."""
    from transfer_laws.registry.refit import refit_law

    client = MlflowClient(tracking_uri=sqlite_uri, registry_uri=sqlite_uri)
    experiment = ensure_experiment("runs", sqlite_uri)
    scratch = []
    for i, (n, d) in enumerate((n, 10.0 ** (6 + 0.5 * j)) for n in (1e5, 1e6, 1e7) for j in range(9)):
        if i % 2:  # logged before the split: D_F_tokens on a scratch run
            scratch.append(land_run(client, experiment, ROLE_SCRATCH, n, d, scratch_loss(n, d)))
        else:  # the current schema: a scratch run's data is D_tokens
            scratch.append(_land_scratch(client, experiment, n, d))
    for n, d_f in finetune_grid(9):
        land_run(client, experiment, ROLE_FINETUNE, n, d_f, finetune_loss(n, d_f))

    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = refit_law(LAW, tracking_uri=sqlite_uri, bootstrap=20, plots=False)
    assert result.status == "registered", result.reason
    said = [r.getMessage() for r in caplog.records] + [str(w.message) for w in caught]
    assert not [m for m in said if "signature" in m.lower() or "input example" in m.lower()], said
    assert set(scratch) <= set(result.fit.input_run_ids)  # both namings read

    name = law_model_name(LAW)
    mv = client.get_model_version(name, result.version)
    assert mv.description.startswith(f"α = {sig3(result.fit.alpha)} [")
    used = sum(p.used for p in result.fit.points)
    runs_line = f"**Runs.** {used} of {len(result.fit.points)} fine-tunes used, with {len(scratch)} scratch"
    assert runs_line in mv.description
    assert mv.tags["alpha"].startswith(f"{sig3(result.fit.alpha)} [")
    assert mv.tags["beta"].endswith(f", {sig3(result.fit.intervals['beta'][1])}]")
    assert client.get_registered_model(name).description == law_model_description(LAW)

    from mlflow.models import get_model_info

    info = get_model_info(f"models:/{name}/{result.version}")
    assert info.signature is not None
    assert [c.name for c in info.signature.inputs.inputs] == ["N", "D_F"]
    assert "D_T_low" in [c.name for c in info.signature.outputs.inputs]

    for experiment_name in ("runs", REFIT_EXPERIMENT):
        tags = client.get_experiment_by_name(experiment_name).tags
        assert tags[MLFLOW_EXPERIMENT_KIND] == EXPERIMENT_KIND_TRAINING
        assert LAW_PAGE_PATH in tags[MLFLOW_NOTE]
    view = json.loads(client.get_experiment(experiment).tags[SAVED_VIEW_PREFIX + RUNS_VIEW_ID])
    columns = json.loads(view["state"])["selectedColumns"]  # what the runs table shows when the view is opened
    assert {"metrics.`N`", "params.`D_F_tokens`", "params.`D_tokens`", "tags.`transfer.role`",
            "metrics.`best_test_loss`"} <= set(columns)
    # "sorted by N" sorts as numbers: the view orders by a metric (a param would put 100096 before 12768)
    order = json.loads(view["state"])["orderByKey"]
    sized = client.create_experiment("sized")
    for n in (100_096, 12_768, 25_472):
        client.log_metric(client.create_run(sized).info.run_id, METRIC_N, n)
    ordered = client.search_runs([sized], order_by=[f"{order} ASC"])
    assert [r.data.metrics[METRIC_N] for r in ordered] == [12_768, 25_472, 100_096]
    assert runs_view_link(experiment) in client.get_experiment(experiment).tags[MLFLOW_NOTE]
    assert not any(k.startswith(SAVED_VIEW_PREFIX) for k in client.get_experiment_by_name(REFIT_EXPERIMENT).tags)
    client.set_experiment_tag(experiment, MLFLOW_NOTE, "mine")
    ensure_experiment("runs", sqlite_uri)
    assert client.get_experiment(experiment).tags[MLFLOW_NOTE] == "mine"  # a user's description is kept


def _land_scratch(client: MlflowClient, experiment_id: str, n: float, d: float) -> str:
    run_id = client.create_run(experiment_id).info.run_id
    client.log_batch(run_id, params=[Param(PARAM_N, str(int(n))), Param(PARAM_D_TOKENS, str(int(d)))],
                     metrics=[Metric(METRIC_BEST_TEST_LOSS, scratch_loss(n, d), 0, 0)],
                     tags=[RunTag(TAG_ROLE, ROLE_SCRATCH), RunTag(TAG_TARGET, "python"), RunTag(TAG_TOKENIZER, DIGEST)])
    client.set_terminated(run_id, "FINISHED")
    return run_id
