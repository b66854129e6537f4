"""The law page on the MLflow server: ``/transfer-laws/`` (HTML), ``/transfer-laws/api/laws`` (JSON) and a
CSRF-protected "refit now" endpoint. Both list every law, paginated (``?page=N``; ``?law=<law>`` opens the page
holding that law), from ``page_cache`` (each law version read once); under basic auth only the laws the user may
read (``page_auth``). ``register_law_page(app)`` adds it to MLflow's Flask app.

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
from functools import partial
from typing import TYPE_CHECKING, TypedDict

from flask import Blueprint, abort, jsonify, make_response, render_template, request
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from transfer_laws.plugin.page_auth import protect_law_page, readable_experiments
from transfer_laws.plugin.page_cache import Entry, LawCache
from transfer_laws.plugin.page_calibration import Calibration, calibration_section
from transfer_laws.plugin.page_data import LawView
from transfer_laws.plugin.page_fit import FitView, finite, fit_view
from transfer_laws.plugin.page_map import map_sections, target_maps
from transfer_laws.plugin.page_svg import d_t_svg, history_svg, loss_svg
from transfer_laws.plugin.refit_target import refit_target
from transfer_laws.plugin.service_account import MISSING_MESSAGE, service_account
from transfer_laws.registry import schema
from transfer_laws.registry.paper import TEXT_TO_PYTHON
from transfer_laws.registry.reader import UnknownLaw
from transfer_laws.registry.records import RunResult
from transfer_laws.registry.refit import refit_law
from transfer_laws.registry.tracking import server_client

if TYPE_CHECKING:
    from flask import Flask, Response

    from transfer_laws.registry.fit import KPerChar, TransferLaw
    from transfer_laws.registry.refit import RefitResult

URL_PREFIX = schema.LAW_PAGE_PATH.rstrip("/")
PAGE_LAWS = 20
"""Laws drawn per page (``?page=N``; every law the user may see is listed in the side bar)."""
API_PER_PAGE, API_MAX_PER_PAGE = 100, 500
"""Laws per ``/api/laws`` page by default (``?page=N&per_page=M``), and the most one page may hold."""
CSRF_COOKIE = "tl_csrf"
CSRF_HEADER = "X-TL-CSRF"


class UiLinks(TypedDict):
    """MLflow UI hrefs of one law: its runs and their parent checkpoints by id and URI, the version's source run,
    the version."""

    runs: dict[str, str]
    parents: dict[str, str]
    source: str | None
    version: str


class LawSection(TypedDict):
    """Everything the template draws for one law."""

    view: LawView
    fit: FitView
    links: UiLinks
    lineage: list[tuple[str, list[RunResult]]]
    history_links: dict[str, str]
    loss_plot: str
    d_t_plot: str
    history_plots: list[str]
    exchange: str | None
    k_per_char: KPerChar | None
    unit: str


class CalibratedSection(LawSection):
    calibration: Calibration


def _ui_links(root: str, view: LawView) -> UiLinks:
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


def _lineage(view: LawView) -> list[tuple[str, list[RunResult]]]:
    """Fine-tunes grouped under the pretrained checkpoint version they started from; scratch runs last."""
    groups: dict[str, list[RunResult]] = {}
    for run in sorted(view.runs, key=lambda r: (r.n_params, r.d_f_tokens)):
        key = run.parent or ("scratch (no checkpoint)" if run.role == schema.ROLE_SCRATCH else "unknown parent")
        groups.setdefault(key, []).append(run)
    return sorted(groups.items(), key=lambda item: (not item[0].startswith("models:/"), item[0]))


def _exchange(fit: TransferLaw | None) -> str | None:
    """The headline "10x N is worth X x fine-tuning data [low, high]" (undetermined when alpha's interval includes
    0); None without a fit."""
    return fit.exchange_headline() if fit is not None else None


def _section(root: str, view: LawView, fv: FitView) -> LawSection:
    """Everything the template draws for one law."""
    links = _ui_links(root, view)
    history_links = {r.version: schema.ui_route(f"#/models/{view.model_name}/versions/{r.version}", root)
                     for r in fv.history}
    return {"view": view, "fit": fv, "links": links, "lineage": _lineage(view), "history_links": history_links,
            "loss_plot": loss_svg(view.runs, fv.fit, links["runs"]),
            "d_t_plot": d_t_svg(fv.fit, view.runs, links["runs"]) if fv.fit is not None else "",
            "history_plots": [history_svg(fv.history, name) for name in ("alpha", "beta")] if len(fv.history) else [],
            "exchange": _exchange(fv.fit),
            "k_per_char": fv.fit.k_per_char() if fv.fit is not None else None,  # beside the paper's k (per char)
            "unit": (fv.fit.settings.get("unit", "tokens") if fv.fit is not None else "tokens")}


def _with_calibration(client: MlflowClient, view: LawView, section: LawSection) -> CalibratedSection:
    calibration = calibration_section(client, view.law, section["fit"].fit, view.version)["calibration"]
    return CalibratedSection(**section, calibration=calibration)


def law_json(client: MlflowClient, view: LawView, fv: FitView | None = None) -> dict[str, object]:
    """One law in ``/api/laws``: MLflow's records, the fit's warnings and checks, the version history and the
    versions' forecast track record."""
    fv = fv if fv is not None else fit_view(client, view)
    record = calibration_section(client, view.law, fv.fit, view.version)["calibration"]["record"]
    return finite({**asdict(view), "warnings": fv.warnings, "checks": fv.checks, "fit_error": fv.error,
                   "history": [asdict(row) for row in fv.history], "track_record": record})


def _visible(entries: list[Entry], basic_auth: bool) -> list[Entry]:
    """Under basic auth, only laws all of whose runs lie in experiments the user may read (``page_auth``)."""
    if not basic_auth:
        return entries
    readable = readable_experiments({e for entry in entries for e in entry.view.experiment_ids})
    return [entry for entry in entries if set(entry.view.experiment_ids) <= readable]


def _page_of(entries: list[Entry], size: int) -> tuple[int, int]:
    """(page asked for, pages): ``?page=N`` (1-based), or ``?law=<law>``, the page that holds that law."""
    pages = max(1, -(-len(entries) // size))
    law = request.args.get("law")
    if law:
        at = next((i for i, entry in enumerate(entries) if entry.view.law == law), 0)
        return at // size + 1, pages
    asked = request.args.get("page", "1")
    return (min(max(int(asked), 1), pages) if asked.isdigit() else 1), pages


def _targets(shown: list[Entry]) -> set[str]:
    """The targets of the laws a page shows: their transfer maps are drawn (each with every law of its target)."""
    targets = set()
    for entry in shown:
        try:
            targets.add(schema.parse_law(entry.view.law)[1])
        except ValueError:
            continue
    return targets


class RefitUnavailable(RuntimeError):
    """This server cannot refit: the reason says what to configure."""


def _refit(law: str, tracking_uri: str | None, basic_auth: bool) -> RefitResult:
    requested_by = request.authorization.username if basic_auth and request.authorization else None
    if tracking_uri is None:
        # Through the server's own REST API, like the run-landed hook: the backend store URI cannot write artifacts
        # to the proxied (mlflow-artifacts:) locations the server gives its experiments. Under basic-auth that call
        # authenticates as the server's service account; the user's own right to refit was checked by page_auth.
        if basic_auth and service_account() is None:
            raise RefitUnavailable(MISSING_MESSAGE)
        tracking_uri = refit_target()  # the server's configured address, never the request's Host header
        if tracking_uri is None:
            raise RefitUnavailable(f"the server's own address is unknown; set {schema.ENV_SERVER_URI}")
    return refit_law(law, tracking_uri=tracking_uri, requested_by=requested_by)


def register_law_page(app: Flask, tracking_uri: str | None = None, basic_auth: bool | None = None) -> None:
    """Add the ``/transfer-laws/`` blueprint to a Flask app (MLflow's ``mlflow.server.app``).

    ``tracking_uri`` overrides the store the page reads; by default it is the server's backend store.
    ``basic_auth`` (default: ``TRANSFER_LAWS_BASIC_AUTH=1``) tells MLflow's basic-auth app who may use the page:
    call it after ``mlflow.server.auth.create_app(app)``.
    """
    use_auth = basic_auth if basic_auth is not None else os.environ.get(schema.ENV_BASIC_AUTH) == "1"
    # The page reads fit folders and reports on every load: no tqdm "Downloading artifacts" bar in the server log.
    os.environ.setdefault(schema.MLFLOW_ENV_ARTIFACTS_PROGRESS_BAR, "false")
    page = Blueprint("transfer_laws_page", __name__, url_prefix=URL_PREFIX, template_folder="templates",
                     static_folder="static", static_url_path="/static")

    cache = LawCache()

    @page.get("/")
    def index() -> Response:
        client = server_client(tracking_uri)
        root = request.script_root
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        entries = _visible(cache.entries(client), use_auth)
        number, pages = _page_of(entries, PAGE_LAWS)
        args = tuple(sorted(request.args.items()))

        def render() -> str:
            shown = entries[(number - 1) * PAGE_LAWS:number * PAGE_LAWS]
            # A section (with its calibration) is built once per cached entry: a new version or the TTL renews it.
            def section(e: Entry) -> CalibratedSection:
                return _with_calibration(client, e.view, _section(root, e.view, e.fit))

            laws = [cache.derived(e, ("section", root), partial(section, e)) for e in shown]
            side = [(e.view.law, i // PAGE_LAWS + 1) for i, e in enumerate(entries)]  # every law, and its page
            maps = cache.across(entries, ("maps", number, args),
                                lambda: map_sections(client, [e.view for e in entries], request.args,
                                                     _targets(shown)))
            return render_template("law_page.html", laws=laws, maps=maps, csrf_header=CSRF_HEADER,
                                   prefix=root + URL_PREFIX, root=root, paper=TEXT_TO_PYTHON, index=side,
                                   page=number, pages=pages, ui_experiments=schema.ui_route("#/experiments", root),
                                   ui_models=schema.ui_route("#/models", root))

        # The HTML depends only on the laws shown (as cached), the page, the query and the root (the CSRF token
        # goes in a cookie), so one rendering serves every request until a law changes.
        response = make_response(cache.across(entries, ("html", root, number, args), render))
        response.set_cookie(CSRF_COOKIE, token, httponly=False, samesite="Strict", secure=request.is_secure)
        return response

    @page.get("/api/laws")
    def api_laws() -> Response:
        client = server_client(tracking_uri)
        entries = _visible(cache.entries(client), use_auth)
        asked = request.args.get("per_page", "")
        size = min(int(asked), API_MAX_PER_PAGE) if asked.isdigit() and int(asked) > 0 else API_PER_PAGE
        number, pages = _page_of(entries, size)
        shown = entries[(number - 1) * size:number * size]
        laws = [cache.derived(e, "json", partial(law_json, client, e.view, e.fit)) for e in shown]
        targets = cache.across(entries, ("targets", number, size, tuple(sorted(request.args.items()))),
                               lambda: finite(target_maps(client, [e.view for e in entries], request.args,
                                                          _targets(shown))))
        # Each law's JSON is finite already (law_json): only the maps need it, once per set of laws.
        return jsonify({"laws": laws, "page": number, "pages": pages, "per_page": size, "total": len(entries),
                        "next_page": number + 1 if number < pages else None, "targets": targets})

    @page.post("/api/refit")
    def refit() -> Response:
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
        protect_law_page(URL_PREFIX)
