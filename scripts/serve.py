"""``transfer-laws serve``: ``mlflow server --app-name transfer-laws`` on the embedded store or a team's stores.

The app plugin adds the refit hook (a new law version whenever a run lands), the registry webhook receiver and
the ``/transfer-laws/`` page to MLflow's own server.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from transfer_laws.scripts._args import at_least, positive


@dataclass(kw_only=True)
class Args:
    """Arguments of ``transfer-laws serve``."""

    backend_store_uri: str | None = None
    """Backend store (default: the embedded SQLite store under TRANSFER_LAWS_HOME); postgresql+psycopg2://..."""
    artifacts_destination: str | None = None
    """Where proxied artifacts go (default: the embedded artifact folder); s3://bucket/ for teams."""
    host: str = "127.0.0.1"
    """Interface to listen on (0.0.0.0 for a team server; then set --allowed-hosts)."""
    port: int = at_least(1, 5000)
    """Port to listen on."""
    workers: int = positive(1)
    """Server workers (more than one adds ~40 ms per keep-alive request with uvicorn today; see docs/team-setup.md)."""
    allowed_hosts: str | None = None
    """Comma-separated Host header values the server accepts (MLflow's --allowed-hosts)."""
    dry_run: bool = False
    """Print the mlflow server command instead of running it."""


def server_command(args: Args) -> list[str]:
    """The ``mlflow server`` command line for these arguments."""
    from transfer_laws.registry.tracking import embedded_tracking_uri, home_dir

    backend = args.backend_store_uri or embedded_tracking_uri()
    artifacts = args.artifacts_destination or (home_dir() / "artifacts").as_uri()
    command = [sys.executable, "-m", "mlflow", "server", "--app-name", "transfer-laws",
               "--backend-store-uri", backend, "--artifacts-destination", artifacts, "--serve-artifacts",
               "--host", args.host, "--port", str(args.port), "--workers", str(args.workers)]
    if args.allowed_hosts:
        command += ["--allowed-hosts", args.allowed_hosts]
    return command


def run(args: Args) -> int:
    command = server_command(args)
    if args.dry_run:
        print(" ".join(["mlflow", *command[3:]]))
        return 0
    if command[command.index("--backend-store-uri") + 1].startswith("sqlite:"):
        from transfer_laws.registry.tracking import home_dir

        home_dir().mkdir(parents=True, exist_ok=True)
    print(f"serving MLflow with transfer-laws on http://{args.host}:{args.port}/ (law page: /transfer-laws/)",
          flush=True)
    os.execv(command[0], command)  # replaces this process: signals go straight to the server
    return 0  # pragma: no cover
