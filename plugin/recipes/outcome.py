"""What a standalone training run tells its user when it ends: the run, and what the refit after it did."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from transfer_laws.registry.tracking import is_embedded, resolve_tracking_uri

if TYPE_CHECKING:
    from transfer_laws.plugin.training import TrainedRun
    from transfer_laws.registry.fit import TransferLaw
    from transfer_laws.registry.refit import RefitResult


def refit_lines(refit: RefitResult | Sequence[RefitResult] | None) -> list[str]:
    """One line per law the run's refit touched: the new version with alpha and beta, or why there is none."""
    results = [] if refit is None else list(refit) if isinstance(refit, Sequence) else [refit]
    lines = []
    for r in results:
        if r.status == "registered" and r.fit is not None:
            lines.append(f"refit {r.law}: registered version {r.version} from {r.n_runs} runs: "
                         f"alpha = {_with_interval(r.fit, 'alpha')}, beta = {_with_interval(r.fit, 'beta')}")
            lines += [f"  fit warning: {w}" for w in r.fit.warnings]
        elif r.status == "unchanged":
            lines.append(f"refit {r.law}: no new version: same inputs as version {r.version}")
        else:
            lines.append(f"refit {r.law}: no version ({r.status}): {r.reason}")
    return lines


def _with_interval(fit: TransferLaw, name: str) -> str:
    value = float(getattr(fit, name))
    low, high = (fit.intervals or {}).get(name, (math.nan, math.nan))
    interval = f" [{low:.3f}, {high:.3f}]" if math.isfinite(low) and math.isfinite(high) else ""
    return f"{value:.3f}{interval}"


def outcome_lines(trained: TrainedRun, tracking_uri: str | None, headline: str) -> list[str]:
    """The run's headline, then its refit's lines; on a server, where the hook refits, a line that says so instead."""
    lines = refit_lines(trained.refit)
    if lines:
        return [headline, *lines]
    if is_embedded(resolve_tracking_uri(tracking_uri)):
        return [headline, "refit: no law to refit yet (a law is made by fine-tune runs on this run's target)"]
    return [headline, "refit: the tracking server's transfer-laws hook refits the law as the run lands "
                      "(`transfer-laws refit --law <law>` to wait for it)"]

