"""``transfer-laws serve``: ``mlflow server --app-name transfer-laws`` on the embedded store or a team's stores.

The app plugin adds the refit hook (a new law version whenever a run lands), the registry webhook receiver and
the ``/transfer-laws/`` page to MLflow's own server. A busy port is an error before anything starts; "ready" is
printed once the server answers ``/health``, and the command exits with the server (non-zero if it failed).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from transfer_laws.lightning_modules.config import at_least, positive
from transfer_laws.registry.tracking import embedded_tracking_uri, home_dir
from transfer_laws.scripts._errors import BadInput, UserError
from transfer_laws.scripts.cli import QUIETED


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
    ready_timeout_s: float = positive(180.0)
    """Give up (and stop the server) when it does not answer /health within this many seconds."""
    dry_run: bool = False
    """Print the mlflow server command instead of running it."""


def server_command(args: Args) -> list[str]:
    """The ``mlflow server`` command line for these arguments."""
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
    check_port_free(args.host, args.port)
    if command[command.index("--backend-store-uri") + 1].startswith("sqlite:"):
        home_dir().mkdir(parents=True, exist_ok=True)
    url = f"http://{_connect_host(args.host)}:{args.port}/"
    print(f"starting MLflow with transfer-laws on {url} ...", flush=True)
    # The server's own output (MLflow's notices, uvicorn's access log) goes to stderr: stdout is ours, so a
    # supervisor can wait for the "ready" line.
    server = subprocess.Popen(command, stdout=sys.stderr, env=server_env())
    # Ctrl-C and a service manager's SIGTERM go to the server, which shuts down cleanly; we wait for it.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: server.send_signal(signum))
    if wait_until_ready(url, server, args.ready_timeout_s):
        print(f"ready: {url} (law page: {url}transfer-laws/)", flush=True)
    elif server.poll() is None:
        server.terminate()
        server.wait()
        raise UserError(f"the server did not answer on {url}health within {args.ready_timeout_s:g} s; stopped it")
    code = server.wait()
    if code not in (0, -signal.SIGINT, -signal.SIGTERM):
        raise UserError(f"the server exited with code {code} (its own message is above)", code if code > 0 else 1)
    return 0


def server_env() -> dict[str, str]:
    """This process's environment without the variables the CLI set to quiet its own libraries: the server's
    log is the operator's to read."""
    return {key: value for key, value in os.environ.items() if key not in QUIETED}


def check_port_free(host: str, port: int) -> None:
    """UserError when something already listens on ``host:port`` (MLflow would start and die, or worse, not)."""
    if not 1 <= port <= 65535:
        raise BadInput(f"--port must be 1..65535, got {port}")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (is another server running? "
                            "choose another --port)") from None


def wait_until_ready(url: str, server: subprocess.Popen, timeout_s: float) -> bool:
    """True once ``url``/health answers 200; False when the server exits first or ``timeout_s`` passes."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(url + "health", timeout=2) as response:  # our own server
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    return False


def _connect_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to ``host``."""
    return {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
