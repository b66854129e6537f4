"""Where the server's own refits go: its own REST API, at the address the server was configured to listen on.

Never the request's ``Host`` header: under basic-auth the refit authenticates as the service account, so a Host
header chosen by a caller would send that password to the caller's listener, and on any server it would let a
caller start one refit service per made-up host. The target is, in order:

1. ``TRANSFER_LAWS_SERVER_URI`` (e.g. ``http://127.0.0.1:5000``): set it when the server sits behind TLS, a static
   prefix or a socket the command line does not show;
2. the ``--host``/``--port`` (uvicorn, waitress) or ``-b/--bind`` (gunicorn) that ``mlflow server`` passed to the
   web server running this process, with a wildcard host (``0.0.0.0``, ``::``) replaced by loopback, and the
   server's ``--static-prefix`` (under which MLflow serves its API too) appended.

With neither, ``refit_target()`` is None and the server's own refits are off (the app says so at start).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from transfer_laws.registry.schema import ENV_SERVER_URI, MLFLOW_ENV_STATIC_PREFIX

_WILDCARDS = {"", "0.0.0.0", "::", "[::]"}  # hosts to replace, not to bind


def _option(argv: Sequence[str], *names: str) -> str | None:
    """The value of the last ``--name value`` / ``--name=value`` among ``names`` in ``argv``."""
    value = None
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                value = argv[i + 1]
            elif arg.startswith(f"{name}="):
                value = arg.split("=", 1)[1]
    return value


def _listen_address(argv: Sequence[str]) -> tuple[str, str] | None:
    bind = _option(argv, "-b", "--bind")
    if bind and not bind.startswith(("unix:", "fd:")):
        host, _, port = bind.rpartition(":")
        return (host, port) if port.isdigit() else None
    port_option = _option(argv, "--port")
    if port_option and port_option.isdigit():
        return _option(argv, "--host") or "127.0.0.1", port_option
    return None


def refit_target(argv: Sequence[str] | None = None) -> str | None:
    """The base URI of this server's own REST API, from its configuration (see the module docstring), or None."""
    explicit = os.environ.get(ENV_SERVER_URI, "").strip()
    if explicit:
        if not explicit.startswith(("http://", "https://")):
            raise ValueError(f"{ENV_SERVER_URI}={explicit!r} must be an http(s) URI of this server")
        return explicit.rstrip("/")
    address = _listen_address(sys.argv if argv is None else argv)
    if address is None:
        return None
    host, port = address
    if host in _WILDCARDS:
        host = "[::1]" if ":" in host else "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"  # a bare IPv6 address
    scheme = "https" if _option(sys.argv if argv is None else argv, "--ssl-keyfile", "--keyfile") else "http"
    prefix = os.environ.get(MLFLOW_ENV_STATIC_PREFIX, "").strip("/")
    return f"{scheme}://{host}:{port}" + (f"/{prefix}" if prefix else "")
