"""``transfer-laws watch``: poll for laws whose runs are not the ones their latest version read, and refit.

For deployments without the server plugin: at-least-once, every landing is eventually covered. Coverage is decided
by run ids, not by clocks, and a law whose refit registered nothing (its fit failed) is retried only when its runs
change, so a poll never refits the same runs twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from transfer_laws.registry.tracking import use_tracking_uri
from transfer_laws.registry.watch import watch


@dataclass(kw_only=True)
class Args:
    """Arguments of ``transfer-laws watch``."""

    interval_s: float = 30.0
    """Seconds between polls."""
    max_iterations: int | None = None
    """Stop after this many polls (None: run until interrupted)."""
    bootstrap: int = 1000
    """Bootstrap draws of each refit."""
    tracking_uri: str | None = None
    """MLflow tracking URI; default: MLFLOW_TRACKING_URI, else the embedded SQLite store under TRANSFER_LAWS_HOME."""


def run(args: Args) -> int:
    uri = use_tracking_uri(args.tracking_uri)
    print(f"watching {uri} every {args.interval_s:g}s", flush=True)
    for result in watch(uri, interval_s=args.interval_s, max_iterations=args.max_iterations,
                        bootstrap=args.bootstrap):
        detail = f"version {result.version}" if result.version else (result.reason or "")
        print(f"{result.law}: {result.status} {detail}", flush=True)
    return 0
