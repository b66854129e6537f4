"""The server-side "run landed" hook: a Flask ``after_request`` that enqueues refits off the request path.

MLflow has no run-finished event, so we watch the REST calls that change which runs a law sees:

- ``runs/update`` with a terminal status (FINISHED, FAILED, KILLED): every way a client ends a run (fluent
  ``end_run``, ``set_terminated``, Lightning's logger) goes through it. FAILED/KILLED runs are not fit inputs,
  but a run that was FINISHED and is re-marked changes the input set, so every terminal status enqueues.
- ``runs/delete`` and ``runs/restore``: a deleted run leaves the law's inputs (the reader reads active runs only).

Both the ``/api/2.0/mlflow/`` and the UI's ``/ajax-api/2.0/mlflow/`` prefixes count. The hook parses the JSON body
Flask already cached and appends to a queue: microseconds on the request thread. The refit itself talks to the
server over HTTP, so artifacts go wherever the server puts them, at the address from the server's configuration
(``plugin/refit_target.py``), never from the request. At start the hook also queues a sweep that refits every law
its latest version does not cover, so a landing whose refit was still queued when the server died is not lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from flask import request

from transfer_laws.plugin.refit_target import refit_target
from transfer_laws.registry.refit_service import get_service, sweep_on_start
from transfer_laws.registry.schema import ENV_SERVER_URI

if TYPE_CHECKING:
    from flask import Flask, Response

log = logging.getLogger(__name__)

TERMINAL_STATUSES = frozenset({"FINISHED", "FAILED", "KILLED"})
_PREFIXES = ("/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/")
_UPDATE, _DELETE, _RESTORE = "runs/update", "runs/delete", "runs/restore"


def landed_run_id(path: str, method: str, status_code: int, body: object) -> str | None:
    """The run id a successful request ended, deleted or restored, else None."""
    if method != "POST" or status_code != 200 or not isinstance(body, dict):
        return None
    action = next((path[len(p) :] for p in _PREFIXES if path.startswith(p)), None)
    if action not in (_UPDATE, _DELETE, _RESTORE):
        return None
    run_id = body.get("run_id") or body.get("run_uuid")
    if not isinstance(run_id, str) or not run_id:
        return None
    if action == _UPDATE and body.get("status") not in TERMINAL_STATUSES:
        return None
    return run_id


def _default_enqueue(run_id: str, server_uri: str) -> None:
    get_service(server_uri).enqueue_run(run_id)


def _start_sweep(server_uri: str) -> None:
    sweep_on_start(get_service(server_uri))


def install_refit_hook(flask_app: Flask, enqueue: Callable[[str, str], None] | None = None,
                       server_uri: str | None = None) -> bool:
    """Add the ``after_request`` hook to MLflow's Flask app; ``enqueue(run_id, server_uri)`` receives landings.

    ``server_uri`` (default: ``refit_target()``) is where refits go. Without one the hook is not installed and a
    warning says what to set; returns whether it was installed. With the default ``enqueue`` the start sweep is
    queued too.
    """
    uri = server_uri or refit_target()
    if uri is None:
        log.warning("transfer-laws: automatic refits are off: the server's own address is unknown; set %s",
                    ENV_SERVER_URI)
        return False
    target = enqueue or _default_enqueue

    def _after(response: Response) -> Response:
        try:
            run_id = landed_run_id(request.path, request.method, response.status_code, request.get_json(silent=True))
            if run_id is not None:
                target(run_id, uri)
        except Exception:  # the hook must never break MLflow's own response
            log.exception("transfer-laws refit hook failed")
        return response

    flask_app.after_request(_after)
    if enqueue is None:
        _start_sweep(uri)
    return True
