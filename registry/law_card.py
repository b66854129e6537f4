"""The law as people read it in MLflow's own pages: a law version's Markdown description and its tags.

A version's description says what the law is and how far to trust it without leaving MLflow: the equation, k, alpha
and beta with their 95% intervals beside the paper's Table-1 values, the estimator and the checks' verdict, the runs
used and excluded, every warning, and a link to the law page. Its first line gives alpha, beta and k with their
intervals as plain text, which is what MLflow's version list shows. Tags carry k, alpha and beta with their 95%
bounds to 3 significant digits (``alpha = 0.183 [0.146, 0.229]``, readable in the list), the headline verdict and
counts. Pure formatting: no MLflow calls here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from transfer_laws.registry.paper import PAPER_TABLE_1
from transfer_laws.registry.schema import (
    INPUTS_ARTIFACT,
    LAW_COEFFICIENTS,
    LAW_FIT_IN_MODEL,
    LAW_PAGE_PATH,
    LAW_TAG_K_PER_CHAR,
    LAW_TAG_LOO,
    LAW_TAG_LOO_COVERAGE,
    LAW_TAG_LOO_MEAN_ABS_Z,
    LAW_TAG_RUNS,
    LAW_TAG_VERDICT,
    LAW_TAG_WARNINGS,
    PLOTS_ARTIFACT,
    REFIT_EXPERIMENT,
    law_model_name,
    law_page_url,
    parse_law,
    ui_route,
)

if TYPE_CHECKING:
    from transfer_laws.registry.fit import LackOfFit, LawSettings, TransferLaw
    from transfer_laws.registry.reader import LawInputs

DESCRIPTION_LIMIT = 5000
"""MLflow's SQL stores keep at most 5,000 characters of a model version's description."""
LISTED_EXCLUSIONS = 12
"""Excluded runs named in the description; the rest are counted (all are in the refit run's ``inputs.json``)."""
TAG_VALUE_LIMIT = 250
"""Tag values shown in the version list are kept short."""

_GREEK = {"k": "k", "alpha": "α", "beta": "β"}


def sig3(value: float | None) -> str:
    """3 significant digits, plain where that is short (0.183, 1.23e+04, -0.38)."""
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    return f"{float(value):.3g}"


def version_tags(fit: TransferLaw) -> dict[str, str]:
    """Tags of a law version: ``k``, ``alpha``, ``beta`` each as ``value [low, high]`` (95%, 3 significant digits),
    the checks' headline verdict, the warning count and the runs used."""
    tags = {name: _with_interval(fit, name) for name in LAW_COEFFICIENTS}
    tags[LAW_TAG_K_PER_CHAR] = fit.k_per_char().text()[:TAG_VALUE_LIMIT]
    verdict = fit.checks.get("verdict") or []
    if verdict:
        tags[LAW_TAG_VERDICT] = str(verdict[0])[:TAG_VALUE_LIMIT]
    tags[LAW_TAG_WARNINGS] = str(len(fit.warnings))
    tags[LAW_TAG_RUNS] = str(_used_finetunes(fit) + _scratch_count(fit))
    loo = fit.checks.get("loo")
    if loo and loo["n"]:
        tags[LAW_TAG_LOO] = calibration_line(loo)
        tags[LAW_TAG_LOO_COVERAGE] = f"{loo['coverage']:.3f}"
        tags[LAW_TAG_LOO_MEAN_ABS_Z] = f"{loo['mean_abs_z']:.3f}"
    return tags


def calibration_line(record: Mapping[str, object]) -> str:
    """``<inside>/<n> inside the 95% interval (<coverage>), mean |z| <z>`` of a set of forecasts (a ``Calibration``
    record, read back from JSON too)."""
    if not record.get("n"):
        return "no forecast scored yet"
    return (f"{record['inside']}/{record['n']} inside the 95% interval ({record['coverage']:.0%}), "
            f"mean |z| {record['mean_abs_z']:.2f}")


def summary_line(fit: TransferLaw) -> str:
    """``α = 0.183 [..], β = 0.52 [..], k = 1.23e+03 [..]``: the law's numbers in one line, exponents first."""
    return ", ".join(f"{_GREEK[name]} = {_with_interval(fit, name)}" for name in ("alpha", "beta", "k"))


def _with_interval(fit: TransferLaw, name: str) -> str:
    low, high = fit.intervals.get(name, (math.nan, math.nan))
    return f"{sig3(getattr(fit, name))} [{sig3(low)}, {sig3(high)}]"


def version_description(law: str, fit: TransferLaw, inputs: LawInputs | None = None) -> str:
    """Markdown for a law version (see the module docstring), at most ``DESCRIPTION_LIMIT`` characters."""
    settings = fit.settings
    unit = settings.get("unit", "tokens")
    warnings = [str(w) for w in fit.warnings]
    # The first line is what MLflow's version list shows, as plain text and cut short: numbers first, no markup.
    head = (f"{summary_line(fit)} (95% intervals)" + (f", {len(warnings)} warning(s)" if warnings else "")
            + f". Law {law}: D_T = k · D_F^α · N^β.")
    lines = [head, "",
             f"D_T is the effective data transferred by pretraining, D_F the fine-tuning data in {unit}, N the "
             "non-embedding parameter count. " + _exchange_sentence(fit), ""]
    lines += _coefficient_table(law, fit, unit)
    lines += _checks_section(fit, settings)
    lines += _regime_section(fit, unit)
    lines += _calibration_section(fit)
    if warnings:
        lines += ["", "**Warnings**", *[f"- {w}" for w in warnings]]
    lines += _runs_section(fit, inputs)
    footer = (f"\n\n[Open the law page]({law_page_url(law)}) for the plots, the runs and a refit button (on a "
              "server started with `--app-name transfer-laws`). The source run of this version holds the fit "
              "folder, the plots and `inputs.json` (every run read, used and excluded).")
    return _cap("\n".join(lines), DESCRIPTION_LIMIT - len(footer)) + footer


def law_model_description(law: str) -> str:
    """Markdown for the registered model that holds a law's versions."""
    return (f"Scaling law for transfer `{law}` (Hernandez et al. 2021): **D_T = k · D_F^α · N^β**, refitted from "
            "every finished fine-tune of this law and the scratch runs of its target as runs land. Each version is "
            "one fit: its description gives k, α, β with 95% intervals, the checks and warnings; its tags give the "
            f"numbers. `models:/{law_model_name(law)}@latest` is the newest version: MLflow resolves `@latest` "
            "itself, so it is not listed in the Aliases column. Load a version with `mlflow.pyfunc.load_model` and "
            "predict from a table with columns N and D_F (numbers, integers or not). "
            f"[Open the law page]({law_page_url(law)}). " + _map_sentence(law))


def _map_sentence(law: str) -> str:
    """Where this law meets the other sources of its target (the transfer map)."""
    target = parse_law(law)[1]
    return (f"Every source of `{target}` side by side, and which checkpoint to fine-tune from: "
            f"[the transfer map]({LAW_PAGE_PATH}#map-{target}), run `transfer-map-{target}` of experiment "
            f"`{REFIT_EXPERIMENT}` (its charts), `transfer-laws choose --target {target} --n N --d-f D`.")


def _version_link(law: str, version: str) -> str:
    name = law_model_name(law)
    return f"[`{name}` version {version}]({ui_route(f'#/models/{name}/versions/{version}')})"


def law_model_note(law: str, version: str, fit: TransferLaw) -> str:
    """Markdown for the law's logged model (the model page): which version it is and where the fit lies."""
    return (f"The fit of {_version_link(law, version)}: {summary_line(fit)}. "
            f"The fit folder (`law.json` + `draws.npz`, logged once) is `{LAW_FIT_IN_MODEL}/` under this model's "
            "artifacts; `predict` maps a table with columns N and D_F to D_T, D_E and the predicted loss with "
            "95% intervals (the loss's, `predicted_loss_low`/`_high`, is a prediction interval: where one run's best "
            "loss falls, the run-to-run noise included)."
            f" `transfer-laws report --law {law} --version {version}` renders its plots.")


def refit_run_note(law: str, version: str, fit: TransferLaw) -> str:
    """Markdown for the refit run (the run page): what it registered and where each part lies."""
    return (f"Refit of law `{law}` that registered {_version_link(law, version)}: "
            f"{summary_line(fit)}. Metrics: k, alpha, beta and their bounds. Artifacts: `{INPUTS_ARTIFACT}` (the "
            f"runs read, used and excluded with reasons) and `{PLOTS_ARTIFACT}/`; the fit folder is in the logged "
            f"model `law` (`{LAW_FIT_IN_MODEL}/`). [Open the law page]({law_page_url(law)}).")


def _coefficient_table(law: str, fit: TransferLaw, unit: str) -> list[str]:
    """k, alpha, beta with intervals beside the paper's. The paper's k is per character: it sits beside our k per
    character (converted with the characters per token measured on the law's runs, or "n/a" with the reason when
    they logged none), never beside k per token."""
    paper = PAPER_TABLE_1.get(law)
    in_chars = unit == "chars"
    per_char = fit.k_per_char()
    header = "| | fitted | 95% interval |" + (" paper, Table 1 |" if paper else "")
    rows = [header, "|---|---|---|" + ("---|" if paper else "")]
    for name in LAW_COEFFICIENTS:
        label = _GREEK[name] if name != "k" or in_chars else f"k (D_F in {unit})"
        low, high = dict(fit.intervals).get(name, (math.nan, math.nan))
        row = f"| {label} | {sig3(getattr(fit, name))} | [{sig3(low)}, {sig3(high)}] |"
        if paper:
            row += f" {paper[name]:.3g} |" if name != "k" or in_chars else " |"
        rows.append(row)
        if name == "k" and not in_chars:
            value = ("n/a" if per_char.value is None else
                     f"{sig3(per_char.value)} | [{sig3(per_char.low)}, {sig3(per_char.high)}]")
            row = f"| k (D_F in characters) | {value} |" + (" |" if per_char.value is None else "")
            rows.append(row + (f" {paper['k']:.3g} |" if paper else ""))
    note = f"k per character: {per_char.basis()}; α and β do not depend on the unit."
    if paper:
        note = (f"The paper's values are for Python after pretraining on {paper['pretrained on']}, with D_F in "
                f"characters and models of 10^5 to 10^8 parameters. " + note)
    return [*rows, "", note]


def _checks_section(fit: TransferLaw, settings: LawSettings) -> list[str]:
    checks = fit.checks
    estimator = checks.get("estimator") or settings.get("d_e_method", "?")
    lines = ["", f"**Checks.** D_E estimator: `{estimator}`."]
    verdict = [str(v) for v in checks.get("verdict") or []]
    if verdict:
        lines[-1] += f" Verdict: **{verdict[0]}**"
        lines += [f"- {v}" for v in verdict[1:]]
    candidates = checks.get("candidates") or []
    if candidates:
        lines += ["", "| D_E method | held-out error | α | β | chosen |", "|---|---|---|---|---|"]
        for c in candidates:
            lines.append(f"| {c.get('method')} | {sig3(c.get('cv_error'))} | {sig3(c.get('alpha'))} | "
                         f"{sig3(c.get('beta'))} | {'yes' if c.get('chosen') else ''} |")
    needs = [str(n) for n in checks.get("needs") or []]
    if needs:
        lines += ["", "**To tighten the fit**", *[f"- {n}" for n in needs]]
    cross = fit.cross_check
    if cross and any(sig3(cross.get(name)) != sig3(getattr(fit, name)) for name in LAW_COEFFICIENTS):  # not a repeat
        lines += ["", f"Paper's fit-the-fits route: k = {sig3(cross.get('k'))}, α = {sig3(cross.get('alpha'))}, "
                      f"β = {sig3(cross.get('beta'))}."]
    return lines


def _regime_section(fit: TransferLaw, unit: str) -> list[str]:
    """Where the law holds: per N the D_F range fitted and where the fine-tunes bend, and the lack-of-fit check."""
    checks = fit.checks
    regime = checks.get("regime")
    rows = regime["holds"] if regime else []
    if not rows:
        return []
    lof: LackOfFit = checks.get("lack_of_fit") or {}
    tests = lof.get("tests") or []
    form = ("not tested (curvature needs 3 or more D_F values)" if lof.get("passed") is None else
            "no curvature beyond the noise" if lof.get("passed") else "**curves beyond the noise**")
    if tests:
        form += f" (lack-of-fit tests, smallest p = {min(t['p'] for t in tests):.2g})"
    lines = ["", f"**Where the law holds.** D_F in {unit} of the fine-tunes in the fit; the law's form: {form}.", "",
             "| N | D_F fitted | bends down above |", "|---|---|---|"]
    lines += [f"| {sig3(r['n'])} | {sig3(r['d_f_low'])} – {sig3(r['d_f_high'])} | "
              f"{sig3(r['bends_above']) if r.get('bends_above') is not None else 'not seen'} |" for r in rows]
    return lines


def _calibration_section(fit: TransferLaw) -> list[str]:
    """Leave-one-out and the earlier versions' forecasts (``registry/forecast.py``): how well the law predicts runs
    it was not fitted on, with 95% *prediction* intervals (parameter uncertainty and run-to-run noise)."""
    loo, record = fit.checks.get("loo"), fit.checks.get("track_record")
    if not loo and not record:
        return []
    lines = ["", "**Calibration** (95% prediction intervals: the law's uncertainty and the run-to-run noise; a "
                 "calibrated law has about 95% inside and mean |z| about 0.8)."]
    if loo:
        lines.append(f"- Leave-one-out, each run predicted by the law fitted without it: {calibration_line(loo)}.")
    for version, rec in (record["versions"] if record else {}).items():
        lines.append(f"- Runs that landed after version {version}, forecast by it: {calibration_line(rec)}.")
    if record and record["pooled"]["n"]:
        lines.append(f"- All forecasts of this law so far: {calibration_line(record['pooled'])}.")
    return lines


def _runs_section(fit: TransferLaw, inputs: LawInputs | None) -> list[str]:
    points = fit.points
    used = _used_finetunes(fit)
    lines = ["", f"**Runs.** {used} of {len(points)} fine-tunes used, with {_scratch_count(fit)} scratch runs "
                 "behind D_E."]
    excluded = [(str(r), str(why)) for r, why in fit.excluded]
    excluded += [(str(r), str(why)) for r, why in dict(getattr(inputs, "excluded", {}) or {}).items()]
    if excluded:
        where = dict(getattr(inputs, "run_experiments", {}) or {})
        lines += ["", f"Excluded ({len(excluded)}):"]
        lines += [f"- [{run_id[:8]}]({_run_route(run_id, where.get(run_id))}): {_short(why)}"
                  for run_id, why in excluded[:LISTED_EXCLUSIONS]]
        if len(excluded) > LISTED_EXCLUSIONS:
            lines.append(f"- ... and {len(excluded) - LISTED_EXCLUSIONS} more (see `inputs.json`)")
    return lines


def _run_route(run_id: str, experiment_id: str | None) -> str:
    """A run's page in MLflow's Model-training view. MLflow redirects ``#/runs/<id>`` to the run's experiment and
    drops the query on the way, so a browser that last chose GenAI opened the run as an "Evaluations" page: the
    experiment is named wherever the reader saw the run."""
    if experiment_id:
        return ui_route(f"#/experiments/{experiment_id}/runs/{run_id}")
    return ui_route(f"#/runs/{run_id}")


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _used_finetunes(fit: TransferLaw) -> int:
    return sum(1 for p in fit.points if p.used)


def _scratch_count(fit: TransferLaw) -> int:
    return int(fit.scratch.log_n.size)


def _exchange_sentence(fit: TransferLaw) -> str:
    """The paper's exchange rate 10^(beta/alpha) with its 95% interval from the draws; undetermined, with no
    number, when alpha's interval includes 0."""
    if not float(getattr(fit, "alpha", math.nan)) > 0:
        return "The exchange rate 10^(β/α) between N and data is not meaningful here (α ≤ 0)."
    try:
        rate = sig3(fit.exchange_rate())
        interval = fit.exchange_interval()
    except (AttributeError, ZeroDivisionError, OverflowError):
        return ""
    if interval is None:
        return ("A 10× larger N is worth an undetermined multiple of the fine-tuning data: α's 95% interval "
                "includes 0, so 10^(β/α) has no bound.")
    # No "] (" in Markdown: MLflow's renderer reads "[a] (b)" as a link to "b", and the interval became one.
    return (f"A 10× larger N is worth {rate}× the fine-tuning data (10^(β/α); 95% interval "
            f"[{sig3(interval[0])}×, {sig3(interval[1])}×] from the bootstrap draws).")


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    tail = "\n\n(cut to fit MLflow's description limit; the full report is the source run's `inputs.json`)"
    return text[:limit - len(tail)].rsplit("\n", 1)[0] + tail
