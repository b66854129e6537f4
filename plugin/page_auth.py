"""The law page under MLflow's basic-auth app: who may read it and who may press "refit now".

MLflow's auth app authenticates every request (no credentials -> 401) and then, failing closed, forbids any
route it has no validator for. This module registers validators for the page's routes: any authenticated user
may open the page and its JSON, which then list only the laws whose runs all lie in experiments the user may read
(``readable_experiments``: MLflow's own check, the one its ``search_runs`` applies); a refit needs edit rights
(``can_update``) on the law's registered model.
"""

from __future__ import annotations

from flask import request

from transfer_laws.registry import schema

STATIC_FILES = ("law_page.js", "law_page.css")


def _can_read() -> bool:
    return True  # authenticated by auth's before_request already; the routes filter the laws (readable_experiments)


def readable_experiments(experiment_ids: set[str]) -> set[str]:
    """Those of ``experiment_ids`` the signed-in user may read runs of: MLflow's ``filter_experiment_ids`` (admins
    read all; otherwise role grants, then the configured default permission). Call inside a request."""
    from mlflow.server import auth  # lazy: MLflow's auth app needs its extra (Flask-WTF), installed for basic auth

    return set(auth.filter_experiment_ids(sorted(experiment_ids)))


def _can_refit() -> bool:
    from mlflow.server import auth  # lazy: as above

    law = str((request.get_json(silent=True) or {}).get("law", ""))
    try:
        name = schema.law_model_name(law)
    except ValueError:
        return True  # the page answers 400 for a malformed law and changes nothing
    try:
        return bool(auth._get_registered_model_permission(name).can_update)  # MLflow's own rule
    except Exception:  # no such model yet: only admins (checked before validators) may create it
        return False


def protect_law_page(prefix: str) -> None:
    """Register the page's routes with ``mlflow.server.auth``."""
    from mlflow.server import auth  # lazy: as above

    for path in (f"{prefix}/", f"{prefix}/api/laws", *(f"{prefix}/static/{f}" for f in STATIC_FILES)):
        auth.BEFORE_REQUEST_VALIDATORS[(path, "GET")] = _can_read
    auth.BEFORE_REQUEST_VALIDATORS[(f"{prefix}/api/refit", "POST")] = _can_refit
