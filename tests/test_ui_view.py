"""MLflow's UI page on our server: a browser that never chose a view opens MLflow in its Model-training view
(plugin/ui_view.py). The browser path itself is tests/test_browser_newcomer.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

from transfer_laws.plugin.ui_view import (
    DEFAULT_VIEW_SCRIPT,
    TRAINING_VIEW,
    WORKFLOW_STORAGE_KEY,
    open_training_view_by_default,
    with_default_view,
)


def test_script_goes_first_in_head_once() -> None:
    html = '<!doctype html><html><head><meta charset="utf-8"/><script src="main.js"></script></head></html>'
    out = with_default_view(html)
    assert out.index(DEFAULT_VIEW_SCRIPT) < out.index("main.js"), "it must run before MLflow's bundle reads the key"
    assert with_default_view(out) == out
    assert with_default_view("<p>no head</p>") == "<p>no head</p>"
    # Only when the browser has no choice yet; the stored value is JSON, as MLflow's useLocalStorage writes it.
    assert f"getItem({json.dumps(WORKFLOW_STORAGE_KEY)})===null" in DEFAULT_VIEW_SCRIPT
    assert json.dumps(json.dumps(TRAINING_VIEW)) in DEFAULT_VIEW_SCRIPT


def test_mlflows_bundle_still_keeps_the_view_under_that_key() -> None:
    # An MLflow upgrade that renames the key would silently bring back the GenAI Overview for newcomers.
    import mlflow.server

    build = Path(mlflow.server.__file__).parent / "js" / "build" / "static" / "js"
    bundles = list(build.glob("main.*.js"))
    assert bundles, f"MLflow's UI bundle is missing under {build}"
    text = "".join(b.read_text(encoding="utf-8", errors="replace") for b in bundles)
    key, version = WORKFLOW_STORAGE_KEY.rsplit("_v", 1)
    assert re.search(rf'key:"{re.escape(key)}",version:{version}\b', text), "MLflow moved its view choice"
    assert f'MACHINE_LEARNING="{TRAINING_VIEW}"' in text
    from mlflow.server import app

    assert "serve" in app.view_functions, "MLflow renamed the endpoint that serves its UI page"


def test_mlflows_index_route_serves_the_script(tmp_path: Path) -> None:
    from flask import Flask

    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<!doctype html><html><head><title>MLflow</title></head></html>")
    app = Flask("ui", static_folder=str(static))
    app.add_url_rule("/", "serve", lambda: "MLflow's own")
    open_training_view_by_default(app)
    response = app.test_client().get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert DEFAULT_VIEW_SCRIPT in response.get_data(as_text=True)
    (static / "index.html").unlink()  # a source install without the built UI: MLflow's own answer
    assert app.test_client().get("/").get_data(as_text=True) == "MLflow's own"
