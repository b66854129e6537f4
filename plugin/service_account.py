"""The account the server's own refits use under basic-auth: MLflow's standard client variables.

A refit inside the server (the run-landed hook, a signed webhook, the law page's "refit now") talks to the server
over HTTP, so that artifacts go to wherever the server stores them (``mlflow-artifacts:`` proxied locations
included). Under MLflow's basic-auth app those calls need credentials, and the server process has none of its
own: set ``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD`` in its environment to an account that may
create runs in the ``transfer-laws-refits`` experiment and versions of the law models (an admin, or a user with
``MANAGE`` on both). MLflow's client reads them for every request, so nothing else needs configuring.

The page still checks the signed-in user's own rights before it refits on their behalf, and records who asked.
"""

from __future__ import annotations

import os

from transfer_laws.registry.schema import MLFLOW_ENV_PASSWORD, MLFLOW_ENV_USERNAME

MISSING_MESSAGE = (
    f"refits inside a basic-auth server need a service account: set {MLFLOW_ENV_USERNAME} and "
    f"{MLFLOW_ENV_PASSWORD} in the MLflow server's environment (see docs/team-setup.md, 'Basic auth')"
)


def service_account() -> str | None:
    """The username the server's own refits authenticate as, or None when the variables are not both set."""
    username, password = os.environ.get(MLFLOW_ENV_USERNAME), os.environ.get(MLFLOW_ENV_PASSWORD)
    return username if username and password else None
