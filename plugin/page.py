"""The law page on the MLflow server: ``/transfer-laws/`` (HTML), ``/transfer-laws/api/laws`` (JSON) and a
CSRF-protected "refit now" endpoint. ``register_law_page(app)`` adds it to MLflow's Flask app.

Inside the server the page reads the server's own backend store (the ``--backend-store-uri`` that ``mlflow
server`` exports to its workers), so it works under uvicorn with one worker without calling itself over HTTP.
Refit requests use a double-submit cookie: the page sets a random token cookie and the button sends it back
in a header, which a cross-site form cannot do.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import asdict
from typing import Any

from transfer_laws.plugin.page_data import LawView, collect_laws
from transfer_laws.plugin.page_fit import FitView, finite, fit_view
from transfer_laws.plugin.page_svg import d_t_svg, history_svg, loss_svg
from transfer_laws.registry import schema
from transfer_laws.registry.paper import TEXT_TO_PYTHON

URL_PREFIX = schema.LAW_PAGE_PATH.rstrip("/")
CSRF_COOKIE = "tl_csrf"
CSRF_HEADER = "X-TL-CSRF"


def _store_uris(tracking_uri: str | None) -> tuple[str, str]:
    import mlflow

    uri = tracking_uri or os.environ.get(schema.MLFLOW_ENV_SERVER_BACKEND) or mlflow.get_tracking_uri()
    return uri, os.environ.get(schema.MLFLOW_ENV_SERVER_REGISTRY) or uri


def _client(tracking_uri: str | None) -> Any:
    from mlflow import MlflowClient

    uri, registry = _store_uris(tracking_uri)
    return MlflowClient(tracking_uri=uri, registry_uri=registry)


def _ui_links(root: str, view: LawView) -> dict[str, Any]:
    """MLflow UI hrefs (hash routes of the React app, in its Model-training view) for the version, its source run
    and every run."""
    runs = {r.run_id: schema.ui_route(f"#/experiments/{r.experiment_id}/runs/{r.run_id}", root) for r in view.runs}
    parents = {}
    for r in view.runs:
        if r.parent and r.parent.startswith("models:/") and r.parent.count("/") >= 2:
            name, _, version = r.parent.removeprefix("models:/").rpartition("/")
            parents[r.parent] = schema.ui_route(f"#/models/{name}/versions/{version}", root)
    source = (schema.ui_route(f"#/experiments/{view.source_experiment_id}/runs/{view.source_run_id}", root)
              if view.source_run_id and view.source_experiment_id else None)
    version = f"#/models/{view.model_name}" + (f"/versions/{view.version}" if view.version else "")
    return {"runs": runs, "parents": parents, "source": source, "version": schema.ui_route(version, root)}


def _lineage(view: LawView) -> list[tuple[str, list[Any]]]:
    """Fine-tunes grouped under the pretrained checkpoint version they started from; scratch runs last."""
    groups: dict[str, list[Any]] = {}
    for run in sorted(view.runs, key=lambda r: (r.n_params, r.d_f_tokens)):
        key = run.parent or ("scratch (no checkpoint)" if run.role == schema.ROLE_SCRATCH else "unknown parent")
        groups.setdefault(key, []).append(run)
    return sorted(groups.items(), key=lambda item: (not item[0].startswith("models:/"), item[0]))


def _section(root: str, view: LawView, fv: FitView) -> dict[str, Any]:
    """Everything the template draws for one law."""
    links = _ui_links(root, view)
    history_links = {r.version: schema.ui_route(f"#/models/{view.model_name}/versions/{r.version}", root)
                     for r in fv.history}
    return {"view": view, "fit": fv, "links": links, "lineage": _lineage(view), "history_links": history_links,
            "loss_plot": loss_svg(view.runs, fv.fit, links["runs"]),
            "d_t_plot": d_t_svg(fv.fit, view.runs, links["runs"]) if fv.fit is not None else "",
            "history_plots": [history_svg(fv.history, name) for name in ("alpha", "beta")] if len(fv.history) else [],
            "exchange": (10 ** (fv.fit.beta / fv.fit.alpha) if fv.fit is not None and fv.fit.alpha else None),
            "unit": (fv.fit.settings.get("unit", "tokens") if fv.fit is not None else "tokens")}


def law_json(client: Any, view: LawView) -> dict[str, Any]:
    """One law in ``/api/laws``: MLflow's records, the fit's warnings and checks, and the version history."""
    fv = fit_view(client, view)
    return finite({**asdict(view), "warnings": fv.warnings, "checks": fv.checks, "fit_error": fv.error,
                   "history": [asdict(row) for row in fv.history]})


class RefitUnavailable(RuntimeError):
    """This server cannot refit: the reason says what to configure."""


def _refit(law: str, tracking_uri: str | None, basic_auth: bool) -> Any:
    from flask import request

    from transfer_laws.plugin.service_account import MISSING_MESSAGE, service_account
    from transfer_laws.registry.refit import refit_law

    requested_by = request.authorization.username if basic_auth and request.authorization else None
    if tracking_uri is None:
        # Through the server's own REST API, like the run-landed hook: the backend store URI cannot write artifacts
        # to the proxied (mlflow-artifacts:) locations the server gives its experiments. Under basic-auth that call
        # authenticates as the server's service account; the user's own right to refit was checked by page_auth.
        if basic_auth and service_account() is None:
            raise RefitUnavailable(MISSING_MESSAGE)
        from transfer_laws.plugin.refit_target import refit_target

        tracking_uri = refit_target()  # the server's configured address, never the request's Host header
        if tracking_uri is None:
            raise RefitUnavailable(f"the server's own address is unknown; set {schema.ENV_SERVER_URI}")
    return refit_law(law, tracking_uri=tracking_uri, requested_by=requested_by)


def register_law_page(app: Any, tracking_uri: str | None = None, basic_auth: bool | None = None) -> None:
    """Add the ``/transfer-laws/`` blueprint to a Flask app (MLflow's ``mlflow.server.app``).

    ``tracking_uri`` overrides the store the page reads; by default it is the server's backend store.
    ``basic_auth`` (default: ``TRANSFER_LAWS_BASIC_AUTH=1``) tells MLflow's basic-auth app who may use the page:
    call it after ``mlflow.server.auth.create_app(app)``.
    """
    from flask import Blueprint, abort, jsonify, make_response, render_template, request
    from mlflow.exceptions import MlflowException

    from transfer_laws.registry.reader import UnknownLaw

    use_auth = basic_auth if basic_auth is not None else os.environ.get(schema.ENV_BASIC_AUTH) == "1"
    # The page reads fit folders and reports on every load: no tqdm "Downloading artifacts" bar in the server log.
    os.environ.setdefault(schema.MLFLOW_ENV_ARTIFACTS_PROGRESS_BAR, "false")
    page = Blueprint("transfer_laws_page", __name__, url_prefix=URL_PREFIX, template_folder="templates",
                     static_folder="static", static_url_path="/static")

    @page.get("/")
    def index() -> Any:
        client = _client(tracking_uri)
        root = request.script_root
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        laws = [_section(root, view, fit_view(client, view)) for view in collect_laws(client)]
        response = make_response(render_template("law_page.html", laws=laws, csrf_header=CSRF_HEADER,
                                                 csrf_token=token, prefix=root + URL_PREFIX, root=root,
                                                 paper=TEXT_TO_PYTHON,
                                                 ui_experiments=schema.ui_route("#/experiments", root),
                                                 ui_models=schema.ui_route("#/models", root)))
        response.set_cookie(CSRF_COOKIE, token, httponly=False, samesite="Strict", secure=request.is_secure)
        return response

    @page.get("/api/laws")
    def api_laws() -> Any:
        client = _client(tracking_uri)
        return jsonify({"laws": [law_json(client, view) for view in collect_laws(client)]})

    @page.post("/api/refit")
    def refit() -> Any:
        cookie, sent = request.cookies.get(CSRF_COOKIE, ""), request.headers.get(CSRF_HEADER, "")
        if not cookie or not hmac.compare_digest(cookie, sent):
            abort(make_response(jsonify({"error": "missing or mismatched CSRF token; reload the page"}), 403))
        law = str((request.get_json(silent=True) or {}).get("law", ""))
        try:
            schema.parse_law(law)
        except ValueError as err:
            abort(make_response(jsonify({"error": str(err)}), 400))
        try:
            result = _refit(law, tracking_uri, use_auth)
        except (ImportError, RefitUnavailable) as err:
            abort(make_response(jsonify({"error": f"refit is not available on this server: {err}"}), 503))
        except UnknownLaw as err:  # a typo: say which laws exist, not "fit failed"
            abort(make_response(jsonify({"error": str(err), "suggestions": err.suggestions}), 404))
        except MlflowException as err:  # the server refused the refit's own calls (e.g. a wrong service password)
            abort(make_response(jsonify({"error": f"refit of {law} was refused by the tracking server: {err}"}), 503))
        except (ValueError, LookupError) as err:  # e.g. too few runs to fit: the user's data, not the server
            abort(make_response(jsonify({"error": f"refit of {law} failed: {err}"}), 422))
        # RefitResult: registered (new version), unchanged (same inputs as the latest) or failed (reason).
        body = {"law": law, "status": result.status, "version": result.version, "reason": result.reason,
                "n_runs": result.n_runs}
        return make_response(jsonify(body), 422 if result.reason else 200)

    app.register_blueprint(page)
    if use_auth:
        from transfer_laws.plugin.page_auth import protect_law_page

        protect_law_page(URL_PREFIX)
