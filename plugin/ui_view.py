"""MLflow's UI opens in its Model-training view on a ``--app-name transfer-laws`` server, in any browser.

MLflow 3.17 shows an experiment in the view the browser last chose (the "GenAI | Model training" switch atop its
side bar, kept in ``localStorage`` as ``mlflow.workflowType_v1``), not by the experiment's ``mlflow.experimentKind``
tag, and a browser that never chose starts in GenAI. A newcomer clicking our experiment on MLflow's home page then
got the GenAI "Overview" (traces, "No data", a "Detect Issues in Your Traces" pop-up), and the side bar had no
"Models". Links we write carry ``?workflowType=machine_learning`` (``schema.ui_route``), but MLflow's own links (its
home page, its experiment list) do not.

So the server's ``index.html`` gets one inline script, run before MLflow's bundle, that records "Model training" as
the choice when the browser has made none. A user who switches to GenAI keeps that choice, as before.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from flask import make_response

if TYPE_CHECKING:
    from flask import Flask
    from flask.typing import ResponseReturnValue

log = logging.getLogger(__name__)

WORKFLOW_STORAGE_KEY = "mlflow.workflowType_v1"
"""Where MLflow 3.17's UI keeps the browser's view choice (``useLocalStorage({key: "mlflow.workflowType",
version: 1})``, stored as JSON)."""
TRAINING_VIEW = "machine_learning"

DEFAULT_VIEW_SCRIPT = (
    "<script>/* transfer-laws: open MLflow in its Model-training view unless this browser chose a view */"
    f"try{{if(localStorage.getItem({json.dumps(WORKFLOW_STORAGE_KEY)})===null)"
    f"localStorage.setItem({json.dumps(WORKFLOW_STORAGE_KEY)},{json.dumps(json.dumps(TRAINING_VIEW))})}}"
    "catch(e){}</script>"
)


def with_default_view(html: str) -> str:
    """MLflow's ``index.html`` with the script first in its ``<head>`` (unchanged when it has no ``<head>``)."""
    head = html.find("<head>")
    if head < 0 or DEFAULT_VIEW_SCRIPT in html:
        return html
    at = head + len("<head>")
    return html[:at] + DEFAULT_VIEW_SCRIPT + html[at:]


def open_training_view_by_default(flask_app: Flask) -> None:
    """Serve MLflow's UI page (its Flask endpoint ``serve``) with the script; MLflow's own view when the page is
    missing (a source install without the built UI)."""
    original = flask_app.view_functions.get("serve")
    if original is None:
        log.warning("transfer-laws: MLflow's UI route 'serve' is missing; a new browser opens MLflow in its GenAI "
                    "view (switch to 'Model training' at the top of the side bar)")
        return
    index = Path(flask_app.static_folder or "", "index.html")

    def serve(*args: object, **kwargs: object) -> ResponseReturnValue:
        if not index.is_file():
            return flask_app.ensure_sync(original)(*args, **kwargs)  # how Flask itself calls a view
        response = make_response(with_default_view(index.read_text(encoding="utf-8")))
        response.headers["Content-Type"] = "text/html; charset=utf-8"
        response.headers["Cache-Control"] = "no-cache"
        return response

    flask_app.view_functions["serve"] = serve
