"""``transfer-laws refit``: refit a law now (for CI). Exit 0 ok, 2 bad input, 3 fit failed, 4 drift gate tripped."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(kw_only=True)
class Args:
    """Arguments of ``transfer-laws refit``."""

    law: str = "text-to-python"
    """The law to refit, <source>-to-<target>."""
    json: bool = False
    """Print the result as JSON."""
    fail_if_alpha_moves: float | None = None
    """Exit 4 when alpha moved by more than this from the previous version (a CI drift gate)."""
    fail_if_beta_moves: float | None = None
    """Exit 4 when beta moved by more than this from the previous version."""
    bootstrap: int = 1000
    """Bootstrap draws for the intervals."""
    tracking_uri: str | None = None
    """MLflow tracking URI; default: MLFLOW_TRACKING_URI, else the embedded SQLite store under TRANSFER_LAWS_HOME."""


def run(args: Args) -> int:
    from transfer_laws.registry.refit_cli import refit_cli

    return refit_cli(args.law, tracking_uri=args.tracking_uri, json_out=args.json,
                     fail_if_alpha_moves=args.fail_if_alpha_moves, fail_if_beta_moves=args.fail_if_beta_moves,
                     bootstrap=args.bootstrap)
