"""The ``mlflow.app`` entry point ``transfer-laws``: ``mlflow server --app-name transfer-laws``.

Placeholder while the refit hook lands; serves MLflow's own app unchanged.
"""

from __future__ import annotations

from typing import Any


def create_app() -> Any:
    """Factory called by ``mlflow server --app-name transfer-laws``."""
    from mlflow.server import app as flask_app
    from mlflow.server.fastapi_app import create_fastapi_app

    return create_fastapi_app(flask_app)
