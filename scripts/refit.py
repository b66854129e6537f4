"""``transfer-laws refit``: refit a law now (for CI), print it, and turn the outcome into an exit code.

Exit codes (docs/ci-refit.md): 0 ok, 1 unexpected error, 2 bad input, 3 fit failed, 4 drift gate tripped,
5 evidence gate tripped (an interval includes 0, or the fit warns), 6 law-misfit gate tripped (the law's form
fails its lack-of-fit check, or fine-tunes lie past the low-data regime), 7 forecast gate tripped (too few of the
runs that landed after a version fell inside its 95% prediction interval). With ``--json`` stdout is exactly one JSON
document whatever happens (schema ``SCHEMA_VERSION``, documented in docs/ci-refit.md); MLflow's own chatter
("View run ...") goes to stderr, and no tracking URI or password is printed.
"""

from __future__ import annotations

import contextlib
import math
import sys
import typing
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from transfer_laws.lightning_modules.config import at_least
from transfer_laws.registry.forecast import track_record
from transfer_laws.registry.law_card import calibration_line
from transfer_laws.registry.refit import STATUS_FAILED, RefitResult, latest_version, refit_law
from transfer_laws.registry.tracking import (
    TrackingError,
    check_reachable,
    client_for,
    resolve_tracking_uri,
    use_tracking_uri,
)
from transfer_laws.scripts._errors import RedactingStream, redact
from transfer_laws.scripts._jsonout import json_document
from transfer_laws.scripts._law import load_law_version

if TYPE_CHECKING:
    from transfer_laws.registry.fit import TrackRecord, TransferLaw

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_FIT_FAILED, EXIT_DRIFT, EXIT_EVIDENCE = 0, 1, 2, 3, 4, 5
EXIT_MISFIT, EXIT_FORECAST = 6, 7
SCHEMA_VERSION = 2
"""Version of the ``--json`` document; bumped when a field changes meaning or goes away (new fields do not)."""


@dataclass(kw_only=True)
class Args:
    """Arguments of ``transfer-laws refit``."""

    law: str = "text-to-python"
    """The law to refit, <source>-to-<target>."""
    json: bool = False
    """Print the result as one JSON document on stdout (schema: docs/ci-refit.md); everything else goes to
    stderr."""
    fail_if_alpha_moves: float | None = at_least(0, None)
    """Exit 4 when alpha moved by more than this from the previous version (a CI drift gate)."""
    fail_if_beta_moves: float | None = at_least(0, None)
    """Exit 4 when beta moved by more than this from the previous version."""
    fail_if_alpha_interval_includes_0: bool = False
    """Exit 5 when alpha's 95% interval includes 0 (the data do not show that D_T grows with D_F)."""
    fail_if_beta_interval_includes_0: bool = False
    """Exit 5 when beta's 95% interval includes 0 (the data do not show that D_T grows with N)."""
    fail_on_warnings: bool = False
    """Exit 5 when the fit carries any warning."""
    fail_if_law_misfit: bool = False
    """Exit 6 when the law's form fails its lack-of-fit check or fine-tunes lie past the low-data regime."""
    fail_if_forecast_coverage_below: float | None = at_least(0, None)
    """Exit 7 when fewer than this share (0-1) of the law's forecasts (runs that landed after a version, predicted
    by it) fell inside their 95% prediction interval; no forecast scored yet never trips it."""
    bootstrap: int = at_least(0, 1000)
    """Bootstrap draws for the intervals."""
    tracking_uri: str | None = None
    """MLflow tracking URI; default: MLFLOW_TRACKING_URI, else the embedded SQLite store under TRANSFER_LAWS_HOME."""


@dataclass(frozen=True)
class Gates:
    """What makes a refit fail CI although the fit succeeded."""

    alpha_moves: float | None = None
    """Exit 4 when alpha moved more than this from the previous ``@latest``."""
    beta_moves: float | None = None
    """Exit 4 when beta moved more than this."""
    interval_includes_0: tuple[str, ...] = field(default_factory=tuple)
    """Exit 5 when the 95% interval of any of these parameters (alpha, beta) includes 0."""
    warnings: bool = False
    """Exit 5 when the fit carries any warning."""
    law_misfit: bool = False
    """Exit 6 when the law's form is in doubt (``registry.fit.misfit``)."""
    forecast_coverage: float | None = None
    """Exit 7 when the pooled coverage of the law's forecasts is below this."""

    def check(self) -> None:
        if self.forecast_coverage is not None and not 0 <= self.forecast_coverage <= 1:
            raise ValueError(f"--fail-if-forecast-coverage-below must be between 0 and 1, got "
                             f"{self.forecast_coverage}")
        for name, gate in (("alpha", self.alpha_moves), ("beta", self.beta_moves)):
            if gate is not None and not (math.isfinite(gate) and gate >= 0):
                raise ValueError(f"--fail-if-{name}-moves must be a finite number >= 0, got {gate}")
        unknown = set(self.interval_includes_0) - {"alpha", "beta", "k"}
        if unknown:
            raise ValueError(f"no parameter {sorted(unknown)} to gate on; use alpha or beta")


def _version_fit(uri: str, law: str, version: str) -> TransferLaw:
    """The fitted law of an existing version (what an unchanged refit reports and gates on)."""
    use_tracking_uri(uri)
    fit, _, _ = load_law_version(law, version)
    return fit


def _previous_exponents(uri: str, law: str) -> dict[str, float]:
    latest = latest_version(client_for(uri), law)
    if latest is None or not latest.run_id:
        return {}
    metrics = client_for(uri).get_run(latest.run_id).data.metrics
    return {k: metrics[k] for k in ("alpha", "beta") if k in metrics}


def _moves(result: RefitResult, previous: dict[str, float], gates: Gates) -> dict[str, float]:
    """How far each gated exponent moved past its gate (empty when every gate holds)."""
    tripped: dict[str, float] = {}
    for name, gate in (("alpha", gates.alpha_moves), ("beta", gates.beta_moves)):
        if gate is None or name not in previous or result.fit is None:
            continue
        moved = abs(float(getattr(result.fit, name)) - previous[name])
        if moved > gate:
            tripped[name] = moved
    return tripped


def _evidence(result: RefitResult, gates: Gates) -> list[str]:
    """Why each tripped evidence gate tripped, one sentence each (empty when every gate holds)."""
    fit = result.fit
    if fit is None:
        return []
    tripped = []
    for name in gates.interval_includes_0:
        low, high = fit.intervals.get(name, (math.nan, math.nan))
        if not (math.isfinite(low) and math.isfinite(high)):
            tripped.append(f"{name} has no finite 95% interval ({low}, {high})")
        elif low <= 0 <= high:
            tripped.append(f"{name}'s 95% interval [{low:.4g}, {high:.4g}] includes 0")
    if gates.warnings and fit.warnings:
        tripped.append(f"the fit warns: {fit.warnings[0]}" + (f" (+{len(fit.warnings) - 1} more)"
                                                               if len(fit.warnings) > 1 else ""))
    return tripped


def _misfit(result: RefitResult) -> list[str]:
    """Why the law's form is in doubt (empty when it is not, or the fit has no such check)."""
    # lazy: numpy and scipy (~1 s), not needed before this step
    from transfer_laws.registry.fit import misfit

    return [] if result.fit is None else misfit(result.fit.checks)


def _forecast_gate(record: TrackRecord, gates: Gates) -> str | None:
    """Why the forecast gate tripped (None when it holds, is off, or nothing was forecast yet)."""
    pooled = record["pooled"]
    coverage = pooled["coverage"]
    if gates.forecast_coverage is None or not pooled["n"] or coverage is None:
        return None
    if coverage < gates.forecast_coverage:
        return (f"{pooled['inside']} of {pooled['n']} forecasts inside their 95% prediction interval "
                f"({coverage:.0%} < {gates.forecast_coverage:.0%})")
    return None


def describe(result: RefitResult, previous: dict[str, float], drift: dict[str, float],
             evidence: list[str], exit_code: int, record: TrackRecord | None = None,
             forecast: str | None = None, misfit: list[str] | None = None) -> dict[str, object]:
    """The ``--json`` document (schema in docs/ci-refit.md)."""
    fit = result.fit
    checks = (getattr(fit, "checks", {}) or {}) if fit is not None else {}
    lack_of_fit = checks.get("lack_of_fit") or {}
    return {
        "schema": SCHEMA_VERSION,
        "law": result.law,
        "status": result.status,
        "exit_code": exit_code,
        "version": result.version,
        "n_runs": result.n_runs,
        "reason": result.reason,
        "k": None if fit is None else float(fit.k),
        "alpha": None if fit is None else float(fit.alpha),
        "beta": None if fit is None else float(fit.beta),
        "intervals": {} if fit is None else {k: [float(v[0]), float(v[1])] for k, v in fit.intervals.items()},
        "k_per_char": None if fit is None else fit.k_per_char().as_dict(),
        "exchange": None if fit is None else _exchange(fit),
        "unit": None if fit is None else fit.settings.get("unit", "tokens"),
        "points_used": None if fit is None else sum(bool(p.used) for p in fit.points),
        "points": None if fit is None else len(fit.points),
        "verdict": list(checks.get("verdict", [])),
        "checks": checks,
        "warnings": [] if fit is None else list(fit.warnings),
        "excluded": [] if fit is None else [{"run_id": r, "reason": why} for r, why in fit.excluded],
        "fingerprint": None if fit is None else fit.fingerprint,
        "previous": previous,
        "drift": drift,
        "evidence": evidence,
        "law_holds": list((checks.get("regime") or {}).get("holds") or []),
        "lack_of_fit": {"passed": lack_of_fit.get("passed"),
                        "p": {t["name"]: t["p"] for t in lack_of_fit.get("tests") or []}} if lack_of_fit else None,
        "misfit": _misfit(result) if misfit is None else misfit,
        "loo": {k: v for k, v in (checks.get("loo") or {}).items() if k != "runs"},
        "track_record": record or {},
        "forecast_gate": forecast,
    }


class Exchange(typing.TypedDict):
    """The ``exchange`` entry of the ``--json`` document: 10^(beta/alpha), how D_F trades against N."""

    determined: bool
    rate: float | None
    low: float | None
    high: float | None
    text: str


def _exchange(fit: TransferLaw) -> Exchange:
    """10^(beta/alpha) with its 95% interval from the draws; ``determined`` false (no numbers) when alpha's interval
    includes 0."""
    interval = fit.exchange_interval() if hasattr(fit, "exchange_interval") else None
    if interval is None:
        return {"determined": False, "rate": None, "low": None, "high": None, "text": fit.exchange_headline()}
    return {"determined": True, "rate": float(fit.exchange_rate()), "low": interval[0], "high": interval[1],
            "text": fit.exchange_headline()}


def _error_document(law: str, status: str, reason: str, exit_code: int) -> dict[str, object]:
    return {"schema": SCHEMA_VERSION, "law": law, "status": status, "exit_code": exit_code, "version": None,
            "reason": reason}


def refit_cli(
    law: str,
    tracking_uri: str | None = None,
    json_out: bool = False,
    fail_if_alpha_moves: float | None = None,
    fail_if_beta_moves: float | None = None,
    bootstrap: int = 1000,
    *,
    fail_if_interval_includes_0: tuple[str, ...] = (),
    fail_on_warnings: bool = False,
    fail_if_law_misfit: bool = False,
    fail_if_forecast_coverage_below: float | None = None,
) -> int:
    """Refit ``law`` and return the exit code (module docstring); prints the outcome to stdout.

    A drift gate compares the new alpha/beta with the version that was ``@latest`` before this refit.
    """
    gates = Gates(fail_if_alpha_moves, fail_if_beta_moves, tuple(fail_if_interval_includes_0), fail_on_warnings,
                  fail_if_law_misfit, fail_if_forecast_coverage_below)

    def emit_error(status: str, reason: str, code: int) -> int:
        reason = redact(reason)
        print(f"error: {reason}", file=sys.stderr)
        if json_out:
            print(json_document(_error_document(law, status, reason, code)))
        return code

    try:
        gates.check()
        if bootstrap < 0:
            raise ValueError("bootstrap must be >= 0")
        uri = resolve_tracking_uri(tracking_uri)
        check_reachable(uri)
        # MLflow writes "View run ..." to stdout when a refit run ends: stdout is ours (one JSON document).
        with contextlib.redirect_stdout(RedactingStream(sys.stderr)):
            previous = _previous_exponents(uri, law)
            result = refit_law(law, tracking_uri=uri, bootstrap=bootstrap)
            if result.fit is None and result.version is not None:  # unchanged: the gates judge the law as it stands
                result = replace(result, fit=_version_fit(uri, law, result.version))

            record = track_record(client_for(uri), law)
    except (ValueError, TrackingError) as exc:
        return emit_error("bad_input", str(exc), EXIT_BAD_INPUT)
    except Exception as exc:  # CI must get a document and a documented code, not a traceback
        first = (str(exc).strip().splitlines() or [""])[0]  # one line: SQLAlchemy appends the SQL and a link
        return emit_error("error", f"{type(exc).__name__}: {first}".rstrip(": "), EXIT_ERROR)
    drift = _moves(result, previous, gates)
    evidence = _evidence(result, gates)
    misfit = _misfit(result)
    forecast = _forecast_gate(record, gates)
    code = (EXIT_FIT_FAILED if result.status == STATUS_FAILED else EXIT_DRIFT if drift
            else EXIT_EVIDENCE if evidence else EXIT_MISFIT if gates.law_misfit and misfit
            else EXIT_FORECAST if forecast else EXIT_OK)
    if json_out:
        print(json_document(describe(result, previous, drift, evidence, code, record, forecast, misfit)))
    elif result.status == STATUS_FAILED:
        print(redact(f"refit of {law} failed: {result.reason}"), file=sys.stderr)
    else:
        summary = result.fit.summary() if result.fit is not None else ""
        print(f"{law}: {result.status} (version {result.version}, {result.n_runs} runs)\n{summary}".rstrip())
        print(_calibration_text(result, record))
    for name, moved in drift.items():
        gate = gates.alpha_moves if name == "alpha" else gates.beta_moves
        print(f"drift: {name} moved by {moved:.4g} (gate {gate})", file=sys.stderr)
    for why in evidence:
        print(f"evidence gate: {why}", file=sys.stderr)
    if gates.law_misfit:
        for why in misfit:
            print(f"law-misfit gate: {why}", file=sys.stderr)
    if forecast:
        print(f"forecast gate: {forecast}", file=sys.stderr)
    elif gates.forecast_coverage is not None and not record["pooled"]["n"]:
        print("forecast gate: no run has been forecast by a version of this law yet; nothing to gate on",
              file=sys.stderr)
    return code


def _calibration_text(result: RefitResult, record: TrackRecord) -> str:
    """The version's leave-one-out calibration and each version's track record, a line each."""
    loo = ((getattr(result.fit, "checks", {}) or {}).get("loo") or {}) if result.fit is not None else {}
    lines = [f"  leave-one-out (95% prediction intervals): {calibration_line(loo)}"] if loo else []
    lines += [f"  runs that landed after version {v}: {calibration_line(r)}"
              for v, r in record["versions"].items()]
    return "\n".join(lines or ["  no forecast or leave-one-out calibration yet"])


def run(args: Args) -> int:
    gated = tuple(name for name, on in (("alpha", args.fail_if_alpha_interval_includes_0),
                                        ("beta", args.fail_if_beta_interval_includes_0)) if on)
    return refit_cli(args.law, tracking_uri=args.tracking_uri, json_out=args.json,
                     fail_if_alpha_moves=args.fail_if_alpha_moves, fail_if_beta_moves=args.fail_if_beta_moves,
                     bootstrap=args.bootstrap, fail_if_interval_includes_0=gated,
                     fail_on_warnings=args.fail_on_warnings, fail_if_law_misfit=args.fail_if_law_misfit,
                     fail_if_forecast_coverage_below=args.fail_if_forecast_coverage_below)
