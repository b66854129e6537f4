"""``transfer-laws refit`` for CI: refit a law now, print it, and turn the outcome into an exit code."""

from __future__ import annotations

import json
import sys
from typing import Any

from transfer_laws.registry.refit import STATUS_FAILED, RefitResult, _client, latest_version, refit_law
from transfer_laws.registry.tracking import TrackingError, check_reachable, resolve_tracking_uri

EXIT_OK, EXIT_BAD_INPUT, EXIT_FIT_FAILED, EXIT_DRIFT = 0, 2, 3, 4


def _previous_exponents(uri: str, law: str) -> dict[str, float]:
    latest = latest_version(_client(uri), law)
    if latest is None or not latest.run_id:
        return {}
    metrics = _client(uri).get_run(latest.run_id).data.metrics
    return {k: metrics[k] for k in ("alpha", "beta") if k in metrics}


def _moves(result: RefitResult, previous: dict[str, float], gates: dict[str, float | None]) -> dict[str, float]:
    """How far each gated exponent moved past its gate (empty when every gate holds)."""
    tripped: dict[str, float] = {}
    for name, gate in gates.items():
        if gate is None or name not in previous or result.fit is None:
            continue
        moved = abs(float(getattr(result.fit, name)) - previous[name])
        if moved > gate:
            tripped[name] = moved
    return tripped


def _describe(result: RefitResult, previous: dict[str, float], tripped: dict[str, float]) -> dict[str, Any]:
    fit = result.fit
    return {
        "law": result.law,
        "status": result.status,
        "version": result.version,
        "n_runs": result.n_runs,
        "reason": result.reason,
        "k": None if fit is None else float(fit.k),
        "alpha": None if fit is None else float(fit.alpha),
        "beta": None if fit is None else float(fit.beta),
        "previous": previous,
        "drift": tripped,
    }


def refit_cli(
    law: str,
    tracking_uri: str | None = None,
    json_out: bool = False,
    fail_if_alpha_moves: float | None = None,
    fail_if_beta_moves: float | None = None,
    bootstrap: int = 1000,
) -> int:
    """Refit ``law``; exit 0 ok, 2 bad input (law name, gate, unreachable store), 3 fit failed, 4 drift gate tripped.

    A gate compares the new alpha/beta with the version that was ``@latest`` before this refit.
    """
    gates = {"alpha": fail_if_alpha_moves, "beta": fail_if_beta_moves}
    try:
        if any(g is not None and not g >= 0 for g in gates.values()):
            raise ValueError("--fail-if-*-moves must be a non-negative number")
        if bootstrap < 0:
            raise ValueError("bootstrap must be >= 0")
        uri = resolve_tracking_uri(tracking_uri)
        check_reachable(uri)
        previous = _previous_exponents(uri, law)
        result = refit_law(law, tracking_uri=uri, bootstrap=bootstrap)
    except (ValueError, TrackingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    tripped = _moves(result, previous, gates)
    if json_out:
        print(json.dumps(_describe(result, previous, tripped), indent=2))
    elif result.status == STATUS_FAILED:
        print(f"refit of {law} failed: {result.reason}", file=sys.stderr)
    else:
        summary = result.fit.summary() if hasattr(result.fit, "summary") else ""
        print(f"{law}: {result.status} (version {result.version}, {result.n_runs} runs)\n{summary}".rstrip())
    for name, moved in tripped.items():
        print(f"drift: {name} moved by {moved:.4g} (gate {gates[name]})", file=sys.stderr)
    if result.status == STATUS_FAILED:
        return EXIT_FIT_FAILED
    return EXIT_DRIFT if tripped else EXIT_OK
