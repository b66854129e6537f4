"""The ``mlflow.app`` entry point ``transfer-laws``: ``mlflow server --app-name transfer-laws``.

Adds to MLflow's own Flask app: the refit hook (``plugin/hook.py``), the signed webhook endpoint
(``plugin/webhooks.py``), when installed, the law page (``plugin/page.py``), and MLflow's UI opening in its
Model-training view in a browser that has not chosen a view (``plugin/ui_view.py``). With
``TRANSFER_LAWS_BASIC_AUTH=1`` it is composed with MLflow's basic-auth app (only one ``--app-name`` is allowed, so
we call ``mlflow.server.auth.create_app`` ourselves). Refits inside the server then authenticate as the service
account in ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` (``plugin/service_account.py``); without one the
refit hook is not installed and a warning says why. The signed webhook route is exempt from basic-auth, since
MLflow's deliveries carry a signature, not credentials, and its body is limited before anything reads it. Refits
go to the server's configured address (``plugin/refit_target.py``), never to a request's Host. Under uvicorn (the
default server) the Flask app is returned wrapped by ``create_fastapi_app``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import TYPE_CHECKING, TypeAlias

from transfer_laws.plugin.service_account import MISSING_MESSAGE, service_account
from transfer_laws.registry.schema import ENV_BASIC_AUTH

if TYPE_CHECKING:
    from fastapi import FastAPI
    from flask import Flask

ServerApp: TypeAlias = "Flask | FastAPI"
"""What ``create_app`` gives the web server: MLflow's Flask app, or its FastAPI wrapper under uvicorn."""

log = logging.getLogger(__name__)

# This module is the server's entry point (``--app-name`` names it): its import stays light and MLflow-free, so
# MLflow's server and our modules that reach Flask or the registry are imported inside the functions below.


def _add_law_page(flask_app: Flask) -> None:
    if importlib.util.find_spec("transfer_laws.plugin.page") is None:
        return
    from transfer_laws.plugin.page import register_law_page  # lazy: optional module, and it reaches the registry

    register_law_page(flask_app)


def _has_service_account() -> bool:
    if service_account() is not None:
        return True
    # Every hook refit would be refused with 401: say so once, at start, instead of once per landed run.
    log.warning("transfer-laws: automatic refits are off: %s", MISSING_MESSAGE)
    return False


def _exempt_webhook_route() -> None:
    """Let MLflow's webhook deliveries past basic-auth: they carry an HMAC signature, not credentials, and the route
    verifies that signature itself (a forged or replayed delivery gets 401/403 from ``plugin/webhooks.py``)."""
    from mlflow.server import auth  # lazy: MLflow internals (entry point)

    from transfer_laws.plugin.webhooks import ROUTE  # lazy: webhooks reaches the registry (entry point)

    prefixes = getattr(auth, "_UNPROTECTED_PATH_PREFIXES", None)  # MLflow's own exemptions (/health, /static)
    if not isinstance(prefixes, tuple):
        log.warning("transfer-laws: this MLflow's basic-auth has no route exemptions; %s needs a reverse proxy "
                    "that lets MLflow's webhook deliveries through", ROUTE)
        return
    if ROUTE not in prefixes:
        auth._UNPROTECTED_PATH_PREFIXES = (*prefixes, ROUTE)  # read on every request


def create_app() -> ServerApp:
    """Factory called by ``mlflow server --app-name transfer-laws``."""
    from mlflow.server import app as flask_app  # lazy: MLflow internals (entry point)

    # lazy: these import Flask, and hook and webhooks reach the registry (entry point)
    from transfer_laws.plugin.hook import install_refit_hook
    from transfer_laws.plugin.ui_view import open_training_view_by_default
    from transfer_laws.plugin.webhooks import register_webhook_route

    basic_auth = os.environ.get(ENV_BASIC_AUTH) == "1"
    if not basic_auth or _has_service_account():
        install_refit_hook(flask_app)
    register_webhook_route(flask_app)
    _add_law_page(flask_app)
    open_training_view_by_default(flask_app)
    if basic_auth:
        from mlflow.server.auth import create_app as create_auth_app  # lazy: MLflow internals (entry point)

        _exempt_webhook_route()
        # Returns the FastAPI wrapper itself under uvicorn, the Flask app otherwise.
        return _limit_webhook_bodies(create_auth_app(flask_app))
    if os.environ.get("_MLFLOW_SGI_NAME", "uvicorn") == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app  # lazy: MLflow internals (entry point)

        return _limit_webhook_bodies(create_fastapi_app(flask_app))
    return flask_app


def _limit_webhook_bodies(app: ServerApp) -> ServerApp:
    """Under uvicorn MLflow's WSGI wrapper reads a whole request body into memory before Flask runs, so the webhook
    route's size limit is enforced in front of it too (``plugin/webhooks.py``, ``BodyLimit``)."""
    from transfer_laws.plugin.webhooks import BodyLimit  # lazy: webhooks reaches the registry (entry point)

    if hasattr(app, "add_middleware"):  # the FastAPI app: its middleware stack is built on the first request
        app.add_middleware(BodyLimit)
    return app
