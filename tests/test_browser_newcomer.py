"""The newcomer's path in a fresh browser (a new profile: no local storage, no view chosen): MLflow's home page, the
demo's experiment clicked in its list, a run, the Model registry, the law model's latest version, the links its
card writes, and the law page, as a person clicks through them after `transfer-laws demo --quick`.

MLflow 3.17 opens an experiment in the view the browser last chose, GenAI by default: every page on this path must
be MLflow's Model-training view (a runs table, "Runs" in the breadcrumb), never the GenAI Overview (traces, "No
data", "Detect Issues") or the "Evaluations" run page. The server is ``mlflow server --app-name transfer-laws`` on
the demo's SQLite store; no PostgreSQL or S3. Screenshots land in test-artifacts/ (or TL_TEST_ARTIFACTS) as
``newcomer-*.png``. ``TL_TEST_DEMO_HOME`` reuses a home a demo already filled (see ``demo_store``).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_browser import _non_white_fraction, browser  # noqa: F401 (the fixture: Debian's Chromium, Playwright)

from transfer_laws.registry import schema

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(1800)]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("TL_TEST_ARTIFACTS") or Path(__file__).resolve().parents[1] / "test-artifacts")
WAIT = 120_000
"""Milliseconds to wait for an element: MLflow's UI is a large bundle and the test machines are slow."""
TRAINING_VIEW = schema.UI_WORKFLOW_QUERY
GENAI_SIGNS = ("Detect Issues", "No data available", "Evaluation runs", "Evaluations")
"""Text of MLflow's GenAI experiment pages (Overview, its pop-up, its side bar, its run page's breadcrumb)."""


@pytest.fixture(scope="module")
def demo(demo_store: Any) -> dict[str, Any]:
    """What the demo left, read through MLflow's client: the experiment, its runs, the law model's newest version."""
    from mlflow import MlflowClient

    client = MlflowClient(demo_store.uri, demo_store.uri)
    experiment = client.get_experiment_by_name(schema.DEFAULT_EXPERIMENT)
    assert experiment is not None, demo_store.output[-2000:]
    runs = client.search_runs([experiment.experiment_id], max_results=500)
    models = client.search_registered_models(f"name LIKE '{schema.LAW_MODEL_PREFIX}%'")
    assert models, f"the demo registered no law:\n{demo_store.output[-2000:]}"
    name = models[0].name
    latest = max(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
    return {"client": client, "experiment": experiment, "runs": runs, "model": name, "version": latest,
            "law": name.removeprefix(schema.LAW_MODEL_PREFIX)}


@pytest.fixture(scope="module")
def mlflow_ui(demo_store: Any, demo: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server --app-name transfer-laws`` on the demo's SQLite store, reading its artifacts where they are."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing: TL_SETUP_BROWSER=1 bash .ci/setup (apt-get install chromium)")
    from _servers import free_port, mlflow_server

    artifacts = demo_store.home / "artifacts"
    # The demo's experiments keep their artifacts as plain folders under the home (file:// locations), which the
    # server reads directly; new experiments would go there too.
    location = demo["experiment"].artifact_location
    assert location.startswith(artifacts.as_uri()), location
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--app-name", "transfer-laws", "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1", "--backend-store-uri", demo_store.uri,
           "--default-artifact-root", artifacts.as_uri()]
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_TRACKING_")}
    env.update({"TRANSFER_LAWS_HOME": str(demo_store.home), "MLFLOW_DISABLE_TELEMETRY": "true"})
    folder = tmp_path_factory.mktemp("newcomer-server")
    log = folder / "server.log"
    with mlflow_server(cmd, port, env=env, cwd=folder, log=log, what="the demo's MLflow server") as uri:
        yield uri


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:  # noqa: F811
    """A page in a fresh browser context: a new profile, nothing in local storage, no view chosen yet."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(WAIT)
    context.set_default_navigation_timeout(WAIT)
    yield context.new_page()
    context.close()


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"newcomer-{name}.png"))


def _close_assistant(page: Any) -> None:
    """MLflow opens its Assistant panel on a browser's first visit; a person reading the page closes it."""
    ask = page.get_by_placeholder("Ask a question")
    if ask.count() and ask.first.is_visible():
        page.get_by_role("button", name="Close", exact=True).last.click()
        ask.first.wait_for(state="hidden")


def _assert_training_view(page: Any) -> None:
    """Nothing of MLflow's GenAI experiment pages on screen (call it once the page's own content has rendered)."""
    main = page.locator("main") if page.locator("main").count() else page.locator("body")
    text = main.first.inner_text()
    shown = [sign for sign in GENAI_SIGNS if sign in text]
    assert not shown, f"MLflow's GenAI view on {page.url}: {shown}"


def _assert_run_page(page: Any, run: Any, experiment_id: str) -> None:
    """The run's page in the Model-training view: its name as the title, the breadcrumb back to the runs."""
    page.get_by_role("heading", name=run.info.run_name, exact=True).wait_for()
    assert f"/experiments/{experiment_id}/runs/{run.info.run_id}" in page.url, page.url
    page.get_by_role("link", name="Runs", exact=True).first.wait_for()
    page.get_by_role("tab", name="Overview").first.wait_for()
    _assert_training_view(page)


def _follow(page: Any, link: Any) -> Any:
    """Click a link as a person would; a link that opens a new tab gives that tab."""
    if (link.get_attribute("target") or "") == "_blank":
        with page.context.expect_page() as opened:
            link.click()
        new = opened.value
        new.wait_for_load_state()
        return new
    link.click()
    return page


def test_newcomer_clicks_from_home_to_run_version_and_law_page(page: Any, mlflow_ui: str,
                                                                 demo: dict[str, Any]) -> None:
    try:
        _walk(page, mlflow_ui, demo)
    except Exception:
        for i, tab in enumerate(page.context.pages):  # what the newcomer saw when it failed
            _shot(tab, f"failed-{i}")
        raise


def _walk(page: Any, mlflow_ui: str, demo: dict[str, Any]) -> None:
    experiment, runs = demo["experiment"], demo["runs"]
    exp_id = experiment.experiment_id
    finished = [r for r in runs if r.info.status == "FINISHED" and r.info.run_name]
    assert finished, "the demo's experiment has no finished run"

    # 1. MLflow's home page; the demo's experiment clicked in its list, by name.
    page.goto(f"{mlflow_ui}/")
    listed = page.get_by_role("link", name=experiment.name, exact=True).first
    listed.wait_for()
    _shot(page, "0-home")
    listed.click()
    page.get_by_role("link", name=finished[0].info.run_name, exact=True).first.wait_for()
    assert f"/experiments/{exp_id}/runs" in page.url and TRAINING_VIEW in page.url, page.url
    assert page.evaluate("localStorage.getItem('mlflow.workflowType_v1')") == '"machine_learning"'
    for run in finished:  # the runs table lists every run of the demo
        assert page.get_by_role("link", name=run.info.run_name, exact=True).count() >= 1, run.info.run_name
    _assert_training_view(page)
    _close_assistant(page)
    _shot(page, "1-experiment-runs")

    # 2. A fine-tune of the law, clicked in that table.
    finetunes = [r for r in finished if r.data.tags.get(schema.TAG_ROLE) == schema.ROLE_FINETUNE]
    run = finetunes[0] if finetunes else finished[0]
    page.get_by_role("link", name=run.info.run_name, exact=True).first.click()
    _assert_run_page(page, run, exp_id)
    _shot(page, "2-run")

    # 3. The Model registry from MLflow's side bar, the law model, its latest version and its card. MLflow greets a
    # new browser there with a pop-up about its new registry UI (already on): a person closes it.
    promo = page.get_by_role("dialog", name=re.compile("new Model Registry UI"))
    page.add_locator_handler(promo, lambda dialog: dialog.get_by_role("button", name="Close").first.click())
    page.get_by_role("link", name="Model registry", exact=True).first.click()
    page.get_by_role("link", name=demo["model"], exact=True).first.click()
    version = demo["version"]
    page.get_by_role("link", name=f"Version {version.version}", exact=True).first.click()
    page.get_by_text(f"Version {version.version}").first.wait_for()
    assert f"/models/{demo['model']}/versions/{version.version}" in page.url, page.url
    page.get_by_role("link", name="Open the law page").first.wait_for()
    refit = demo["client"].get_run(version.run_id)  # MLflow's "Source Run" in the version's header
    source_run = page.get_by_role("link", name=refit.info.run_name, exact=True).first
    source_run.wait_for()
    _assert_training_view(page)
    _shot(page, "3-version")
    card = _description_links(page)
    assert card["law"], "the version's card links the law page"
    assert not card["other"], f"links in the card to no law page, run of its experiment or version: {card['other']}"
    for href in card["runs"]:  # #/runs/<id> would lose the view in MLflow's redirect
        assert f"/experiments/{exp_id}/runs/" in href and TRAINING_VIEW in href, href
    _follow_each(page, card, "3-card")

    # MLflow's own "Source Run" link: the refit run, whose description (ours) links the version and the law page.
    source_run.click()
    _assert_run_page(page, refit, refit.info.experiment_id)
    note = _description_links(page)
    assert note["law"] and note["models"] and not note["other"], note
    _shot(page, "3-refit-run")
    _follow_each(page, {"models": note["models"]}, "3-refit-run")
    page.go_back()
    page.get_by_role("link", name="Open the law page").first.wait_for()

    # 4. The law page from the card, then one of its runs back in MLflow.
    law_page = _follow(page, page.get_by_role("link", name="Open the law page").first)
    section = law_page.locator(f"section#law-{demo['law']}")
    section.locator("svg.fit-plot").wait_for()
    assert law_page.url.split("#")[0].endswith(schema.LAW_PAGE_PATH), law_page.url
    assert section.locator("svg.fit-plot circle.pt").count() > 0, "the law's fit plot has no points"
    _shot(law_page, "4-law-page")
    plot = section.locator("svg.fit-plot").screenshot(path=str(ARTIFACTS / "newcomer-4-fit-plot.png"))
    assert _non_white_fraction(plot) > 0.01, "the fit plot rendered blank"
    run_link = section.locator("table.runs a.run-link").first
    href = run_link.get_attribute("href") or ""
    assert TRAINING_VIEW in href, href
    run_id = href.split("/runs/")[1].split("?")[0]
    back = _follow(law_page, run_link)
    _assert_run_page(back, demo["client"].get_run(run_id), exp_id)
    _shot(back, "4-run-from-law-page")


def _description_links(page: Any) -> dict[str, list[str]]:
    """The links of the description we wrote on this page (MLflow renders it in ``.note-editor-preview-content``),
    by where they lead: the law page, runs, model versions, or anything else (a link that leads nowhere)."""
    ours = page.locator(".note-editor-preview-content").filter(has=page.get_by_role("link", name="Open the law page"))
    ours.first.wait_for()
    found: dict[str, list[str]] = {"law": [], "runs": [], "models": [], "other": []}
    for link in ours.first.locator("a").all():
        href = link.get_attribute("href") or ""
        kind = ("law" if href.startswith(schema.LAW_PAGE_PATH) else "runs" if re.match(r"#/experiments/\w+/runs/", href)
                else "models" if re.match(r"#/models/[^/]+/versions/\d+", href) else "other")
        found[kind].append(href)
    return found


def _follow_each(page: Any, links: dict[str, list[str]], label: str) -> None:
    """Click each run and model-version link of a description; each opens its page in the Model-training view."""
    for kind in ("runs", "models"):
        for i, href in enumerate(links.get(kind, [])):
            assert TRAINING_VIEW in href, href
            target = _follow(page, page.locator(f".note-editor-preview-content a[href='{href}']").first)
            if kind == "runs":
                run_id = href.split("/runs/")[1].split("?")[0]
                assert f"/runs/{run_id}" in target.url, target.url
                target.get_by_role("tab", name="Overview").first.wait_for()
                target.get_by_text(run_id).first.wait_for()
            else:
                name, number = re.match(r"#/models/([^/]+)/versions/(\d+)", href).groups()
                target.get_by_role("heading", name=f"Version {number}").first.wait_for()
                assert f"/models/{name}/versions/{number}" in target.url, target.url
            _assert_training_view(target)
            _shot(target, f"{label}-{kind}-{i}")
            if target is page:
                page.go_back()
            else:
                target.close()
