"""The /transfer-laws/ page on a Flask app over a real embedded MLflow store: data, HTML, JSON, links, CSRF."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from transfer_laws.plugin.page import CSRF_COOKIE, CSRF_HEADER, register_law_page
from transfer_laws.plugin.page_data import collect_laws
from transfer_laws.registry import schema

LAW = "text-to-python"
PARENT = "models:/gpt-text/3"


def _run(client: Any, exp: str, role: str, n: float, d_f: float, loss: float, **tags: str) -> str:
    run = client.create_run(exp, run_name=f"{role}-{int(n)}-{int(d_f)}", tags={schema.TAG_ROLE: role, **tags})
    rid = run.info.run_id
    client.log_param(rid, schema.PARAM_N, str(int(n)))
    client.log_param(rid, schema.PARAM_D_F_TOKENS, str(int(d_f)))
    client.log_metric(rid, schema.METRIC_BEST_TEST_LOSS, loss)
    client.set_terminated(rid)
    return rid


def _register_parent(client: Any, experiment_id: str) -> None:
    """Versions 1-3 of the checkpoint ``PARENT`` names (the reader reads only fine-tunes of registered parents)."""
    name = PARENT.removeprefix("models:/").rpartition("/")[0]
    if client.search_model_versions(f"name = '{name}'"):
        return
    client.create_registered_model(name)
    pretrain = client.create_run(experiment_id, tags={schema.TAG_ROLE: schema.ROLE_PRETRAIN}).info.run_id
    for _ in range(3):
        client.create_model_version(name, f"runs:/{pretrain}/checkpoint", run_id=pretrain)


def seed_law(client: Any, law: str, experiment: str) -> dict[str, Any]:
    """Three fine-tunes of ``law``, a scratch run on its target, another law's run, and two law versions."""
    _, target = schema.parse_law(law)
    exp = client.create_experiment(experiment)
    _register_parent(client, exp)
    ft = {schema.TAG_LAW: law, schema.TAG_PARENT: PARENT, schema.TAG_SOURCE: "text", schema.TAG_TARGET: target}
    finetunes = [_run(client, exp, schema.ROLE_FINETUNE, 1e5, d, 3.0 - 0.2 * i, **ft)
                 for i, d in enumerate((1e4, 1e5, 1e6))]
    # Landed after the shown version, from a checkpoint the registry does not hold: the next fit leaves it out.
    orphan = _run(client, exp, schema.ROLE_FINETUNE, 1e5, 3e5, 2.9, **{**ft, schema.TAG_PARENT: "models:/gpt-text/9"})
    scratch = _run(client, exp, schema.ROLE_SCRATCH, 1e5, 1e5, 3.5, **{schema.TAG_TARGET: target})
    other = _run(client, exp, schema.ROLE_FINETUNE, 1e5, 1e5, 1.0, **{schema.TAG_LAW: f"text-to-{target}x"})
    fit = client.create_run(exp, run_name="fit", tags={schema.TAG_LAW: law})
    for key, value in {"k": 1.9e4, "alpha": 0.18, "beta": 0.38, "k_lo": 1.0e4, "k_hi": 3.0e4,
                       "alpha_lo": 0.12, "alpha_hi": 0.24}.items():
        client.log_metric(fit.info.run_id, key, value)
    report = {"excluded_by_reader": {"r-missing": "missing best_test_loss"},
              "excluded_by_fit": [["r-far", "no scratch curve: out of range"]]}
    client.log_dict(fit.info.run_id, report, "inputs.json")
    client.set_terminated(fit.info.run_id)
    name = schema.law_model_name(law)
    client.create_registered_model(name)
    for _ in range(2):
        mv = client.create_model_version(name, f"runs:/{fit.info.run_id}/law", run_id=fit.info.run_id,
                                         tags={schema.LAW_TAG_LAW: law, schema.LAW_TAG_FINGERPRINT: "abc"})
    # MLflow reserves the alias "latest" (schema.LAW_ALIAS): the page then shows the highest version.
    client.set_registered_model_alias(name, "reviewed", mv.version)
    return {"client": client, "exp": exp, "finetunes": finetunes, "scratch": scratch, "other": other,
            "orphan": orphan, "fit": fit.info.run_id}


@pytest.fixture
def store(sqlite_uri: str) -> dict[str, Any]:
    from mlflow import MlflowClient

    seeded = seed_law(MlflowClient(sqlite_uri, sqlite_uri), LAW, schema.DEFAULT_EXPERIMENT)
    return {**seeded, "uri": sqlite_uri}


@pytest.fixture
def web(store: dict[str, Any]) -> Any:
    app = Flask("test")
    register_law_page(app, tracking_uri=store["uri"])
    return app.test_client()


def test_collect_laws_reads_version_fit_and_runs(store: dict[str, Any]) -> None:
    (view,) = collect_laws(store["client"])
    assert (view.law, view.version, view.aliases, view.version_count) == (LAW, "2", ["reviewed"], 2)
    assert view.params == {"k": 1.9e4, "alpha": 0.18, "beta": 0.38}
    assert view.intervals == {"k": [1.0e4, 3.0e4], "alpha": [0.12, 0.24]}
    ids = {r.run_id for r in view.runs}
    assert ids == {*store["finetunes"], store["scratch"]}, "other laws' runs must not leak in"
    assert view.excluded == [{"run_id": "r-missing", "reason": "missing best_test_loss"},
                             {"run_id": "r-far", "reason": "no scratch curve: out of range"},
                             {"run_id": store["orphan"],
                              "reason": "parent checkpoint models:/gpt-text/9 is not in the registry"}]
    # The page's runs are the refit reader's own records (one record, one query): same ids, same numbers.
    from transfer_laws.registry.reader import read_law_inputs

    assert list(view.runs) == read_law_inputs(LAW, store["client"]).points
    assert view.source_run_id == store["fit"]


def test_page_shows_law_plot_lineage_and_links(web: Any, store: dict[str, Any]) -> None:
    response = web.get("/transfer-laws/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert f'id="law-{LAW}"' in html and "1.9e+04" in html and "[0.12, 0.24]" in html
    assert len(re.findall(r'<circle class="pt (?:filled|hollow)"', html)) == 4
    assert "No curves or bands for this version" in html, "a version without a fit folder says why it has no curves"
    for rid in store["finetunes"]:
        assert f'data-run-id="{rid}"' in html
        assert f'href="/#/experiments/{store["exp"]}/runs/{rid}?workflowType=machine_learning"' in html
    assert 'href="/#/models/gpt-text/versions/3?workflowType=machine_learning"' in html
    assert f'href="/#/models/{schema.law_model_name(LAW)}/versions/2?workflowType=machine_learning"' in html
    assert "missing best_test_loss" in html and "no scratch curve: out of range" in html  # the report's exclusions
    assert CSRF_COOKIE in response.headers["Set-Cookie"]


@pytest.fixture(scope="module")
def fitted_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A law refitted twice by refit_law from synthetic runs of a known law, and the page over that store (one per
    module: two refits are the slow part)."""
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("fitted-home")
        uri = f"sqlite:///{home / 'mlflow.db'}"
        mp.setenv("TRANSFER_LAWS_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        yield _fitted_page(uri)


def _fitted_page(sqlite_uri: str) -> dict[str, Any]:
    from law_runs import LAW as FIT_LAW
    from law_runs import land_finetunes, land_scratch_runs
    from mlflow import MlflowClient

    from transfer_laws.registry.refit import refit_law

    client = MlflowClient(sqlite_uri, sqlite_uri)
    exp = client.create_experiment("runs")
    land_scratch_runs(client, exp)
    land_finetunes(client, exp, 9)
    first = refit_law(FIT_LAW, tracking_uri=sqlite_uri, bootstrap=40, plots=False)
    land_finetunes(client, exp, 15)
    second = refit_law(FIT_LAW, tracking_uri=sqlite_uri, bootstrap=40, plots=False)
    assert (first.version, second.version) == ("1", "2"), (first, second)
    app = Flask("test")
    register_law_page(app, tracking_uri=sqlite_uri)
    return {"web": app.test_client(), "law": FIT_LAW, "fit": second.fit, "client": client}


def test_page_draws_the_fitted_law_figure_1_gap_bands_and_history(fitted_page: dict[str, Any]) -> None:
    from transfer_laws.registry.fit._plots import gap_point, law_colours

    fit, law = fitted_page["fit"], fitted_page["law"]
    html = fitted_page["web"].get("/transfer-laws/").get_data(as_text=True)
    section = html[html.index(f'id="law-{law}"'):]
    assert section.count('class="scratch-curve"') == fit.scratch.levels.size, "one fitted scratch curve per size"
    assert section.count('class="band"') == len({p.n for p in fit.points if p.used}), "one band per size"
    assert 'class="gap"' in section and gap_point(fit) is not None
    for colour in law_colours(fit).values():
        assert colour in section
    assert "fine-tune, in the fit" in section and "from scratch" in section, "the legend explains filled/hollow"
    assert "10\u2075" in section and "10\u2076" in section, "decade ticks on the log axes"
    used = [p.run_id for p in fit.points if p.used]
    assert all(f'data-run-id="{rid}"' in section for rid in used)
    # History: both versions, newest first, with the alpha each refit logged.
    rows = re.findall(r'<tr data-version="(\d+)">', section)
    assert rows == ["2", "1"]
    assert f"{fit.alpha:.3f}" in section and "alpha across versions" in section
    assert fit.checks["verdict"][0].split(":")[0] in section and "Verdict" in section
    # Where the law holds: one row per size with the D_F range fitted there; this straight law bends nowhere.
    holds = fit.checks["regime"]["holds"]
    assert "Where the law holds" in section and len(holds) == len({p.n for p in fit.points if p.used})
    table = section[section.index('class="holds"'):section.index("</table>", section.index('class="holds"'))]
    assert table.count("<tr>") == len(holds) + 1 and table.count("not seen") == len(holds)
    assert f"{holds[0]['d_f_low']:.3g} &ndash; {holds[0]['d_f_high']:.3g}" in table


def test_json_carries_warnings_checks_and_history(fitted_page: dict[str, Any]) -> None:
    response = fitted_page["web"].get("/transfer-laws/api/laws")
    json.loads(response.get_data(as_text=True))  # strict JSON: no NaN or Infinity anywhere
    (law,) = response.get_json()["laws"]
    fit = fitted_page["fit"]
    assert law["warnings"] == fit.warnings and law["fit_error"] is None
    assert law["checks"]["verdict"] == fit.checks["verdict"] and "estimator" in law["checks"]
    assert [h["version"] for h in law["history"]] == ["1", "2"]
    assert law["history"][-1]["params"]["alpha"] == pytest.approx(fit.alpha)
    assert law["history"][-1]["n_runs"] == len(fit.input_run_ids)


def test_static_assets_are_served(web: Any) -> None:
    assert "refit" in web.get("/transfer-laws/static/law_page.js").get_data(as_text=True)
    assert web.get("/transfer-laws/static/law_page.css").status_code == 200


def test_json_endpoint(web: Any, store: dict[str, Any]) -> None:
    data = web.get("/transfer-laws/api/laws").get_json()
    (law,) = data["laws"]
    assert law["law"] == LAW and law["params"]["beta"] == 0.38
    assert sorted(r["run_id"] for r in law["runs"]) == sorted([*store["finetunes"], store["scratch"]])
    # This version's run has metrics but no fit folder: the JSON says so instead of failing.
    assert (law["warnings"], law["checks"]) == ([], {}) and "no readable fit folder" in law["fit_error"]
    assert [h["version"] for h in law["history"]] == ["1", "2"] and law["history"][0]["params"]["alpha"] == 0.18


def test_empty_store_page(sqlite_uri: str) -> None:
    app = Flask("test")
    register_law_page(app, tracking_uri=sqlite_uri)
    client = app.test_client()
    assert "No laws yet" in client.get("/transfer-laws/").get_data(as_text=True)
    body = client.get("/transfer-laws/api/laws").get_json()
    assert (body["laws"], body["total"], body["next_page"], body["targets"]) == ([], 0, None, [])


def test_a_law_model_without_versions_shows_its_runs_and_the_refit_button(sqlite_uri: str) -> None:
    # An admin may register the law model before any refit, to grant a team edit rights on it.
    from mlflow import MlflowClient

    client = MlflowClient(sqlite_uri, sqlite_uri)
    law = "text-to-rust"
    exp = client.create_experiment("runs")
    _register_parent(client, exp)
    tags = {schema.TAG_LAW: law, schema.TAG_TARGET: "rust", schema.TAG_PARENT: PARENT}
    run = _run(client, exp, schema.ROLE_FINETUNE, 1e5, 1e4, 3.0, **tags)
    orphan = _run(client, exp, schema.ROLE_FINETUNE, 1e5, 2e4, 2.9, **{**tags, schema.TAG_PARENT: ""})
    client.create_registered_model(schema.law_model_name(law))
    (view,) = collect_laws(client)
    assert (view.law, view.version, view.version_count, view.params["alpha"]) == (law, None, 0, None)
    assert [r.run_id for r in view.runs] == [run]
    assert view.excluded == [{"run_id": orphan, "reason": f"fine-tune without a parent checkpoint (tag "
                                                          f"{schema.TAG_PARENT})"}]
    app = Flask("test")
    register_law_page(app, tracking_uri=sqlite_uri)
    page = app.test_client().get("/transfer-laws/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "No version yet" in html and f'data-law="{law}"' in html
    assert f'href="/#/models/{schema.law_model_name(law)}?{schema.UI_WORKFLOW_QUERY}"' in html
    assert f'data-run-id="{run}"' in html


def test_refit_requires_matching_csrf_token(web: Any) -> None:
    url = "/transfer-laws/api/refit"
    assert web.post(url, json={"law": LAW}).status_code == 403
    web.get("/transfer-laws/")  # sets the cookie
    assert web.post(url, json={"law": LAW}, headers={CSRF_HEADER: "forged"}).status_code == 403
    token = web.get_cookie(CSRF_COOKIE).value
    bad = web.post(url, json={"law": "not_a_law"}, headers={CSRF_HEADER: token})
    assert bad.status_code == 400 and "not of the form" in bad.get_json()["error"]
    ok = web.post(url, json={"law": LAW}, headers={CSRF_HEADER: token})
    # With the token accepted the refit runs; 503 only while transfer_laws.registry.refit cannot be imported.
    assert ok.status_code in (200, 422, 503), ok.get_data(as_text=True)
    # A typo is not a failed fit: 404 with the laws it may have meant.
    typo = web.post(url, json={"law": LAW[:-2] + LAW[-1] + LAW[-2]}, headers={CSRF_HEADER: token})
    assert typo.status_code == 404, typo.get_data(as_text=True)
    assert typo.get_json()["suggestions"][0] == LAW and "did you mean" in typo.get_json()["error"]


def test_law_page_url_is_the_section_the_page_renders(web: Any) -> None:
    url = schema.law_page_url(LAW, "http://mlflow.example:5000/")
    assert url == f"http://mlflow.example:5000/transfer-laws/#law-{LAW}"
    path, _, anchor = schema.law_page_url(LAW).partition("#")
    assert f'id="{anchor}"' in web.get(path).get_data(as_text=True)
    with pytest.raises(ValueError, match="not of the form"):
        schema.law_page_url("python")


# MLflow's auth module reads its config and opens its user store at import: a child process keeps that global
# state out of this test session. It drives MLflow's own Flask app with basic-auth and the page on it.
AUTH_PROBE = """
import json, sys
from mlflow.server import app, auth
from transfer_laws.plugin.page import CSRF_COOKIE, CSRF_HEADER, register_law_page
auth.create_app(app)
register_law_page(app)
auth.store.create_user("reader", "reader-password-1")
auth.store.create_user("editor", "editor-password-1")
auth.store.create_registered_model_permission(sys.argv[1], "editor", "EDIT")
headers = json.loads(sys.argv[2])
web = app.test_client()
out = {"anon_page": web.get("/transfer-laws/").status_code,
       "anon_refit": web.post("/transfer-laws/api/refit", json={"law": sys.argv[3]}).status_code}
for user in ("reader", "editor"):
    web = app.test_client()
    page = web.get("/transfer-laws/", headers=headers[user])
    token = web.get_cookie(CSRF_COOKIE).value
    hdr = {**headers[user], CSRF_HEADER: token}
    refit = web.post("/transfer-laws/api/refit", json={"law": sys.argv[3]}, headers=hdr)
    out[user] = {"page": page.status_code, "has_law": sys.argv[3] in page.get_data(as_text=True),
                 "json": web.get("/transfer-laws/api/laws", headers=headers[user]).status_code,
                 "refit": refit.status_code, "error": (refit.get_json(silent=True) or {}).get("error", "")}
print("RESULT " + json.dumps(out))
"""


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.slow  # a child process importing MLflow's server and auth apps: ~30 s on a busy machine
def test_basic_auth_read_only_user_sees_but_cannot_refit(store: dict[str, Any], tmp_path: Path) -> None:
    ini = tmp_path / "basic_auth.ini"
    ini.write_text(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{tmp_path / 'auth.db'}\n"
                   "admin_username = admin\nadmin_password = admin-password-1\n"
                   "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    # No service account (MLFLOW_TRACKING_USERNAME/PASSWORD): the editor may refit, but this server cannot.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env = {**env, "MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret",
           "_MLFLOW_SERVER_FILE_STORE": store["uri"], "_MLFLOW_SERVER_REGISTRY_STORE": store["uri"],
           "TRANSFER_LAWS_BASIC_AUTH": "1"}
    headers = {"reader": _basic("reader", "reader-password-1"), "editor": _basic("editor", "editor-password-1")}
    proc = subprocess.run([sys.executable, "-c", AUTH_PROBE, schema.law_model_name(LAW), json.dumps(headers), LAW],
                          env=env, capture_output=True, text=True, timeout=240)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, proc.stderr[-3000:]
    out = json.loads(line.removeprefix("RESULT "))
    assert (out["anon_page"], out["anon_refit"]) == (401, 401)
    assert {k: out["reader"][k] for k in ("page", "has_law", "json", "refit")} == \
        {"page": 200, "has_law": True, "json": 200, "refit": 403}
    assert out["editor"]["page"] == 200 and out["editor"]["refit"] == 503, out
    assert "MLFLOW_TRACKING_USERNAME" in out["editor"]["error"]
