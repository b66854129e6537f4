"""The law page in headless Chromium (Debian's, driven by Playwright; no browser download) against the real
server stack: runs and law versions created over HTTP, the page loads them, the plot draws, links and refit work.

Screenshots land in test-artifacts/ (ignored by git), or in the folder named by TL_TEST_ARTIFACTS. Run with the stack
up: `bash .ci/run` or `. .ci/services.sh; services_start`.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_page import seed_law

from transfer_laws.registry import schema

pytestmark = [pytest.mark.browser, pytest.mark.server]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("TL_TEST_ARTIFACTS") or Path(__file__).resolve().parents[1] / "test-artifacts")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def page_root(server_stack: Any) -> Iterator[str]:
    """Where /transfer-laws/ is served: the MLflow server itself once plugin/app.py registers the page; until
    then a local Flask server with the page reading the same PostgreSQL backend store as the MLflow server."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(f"{server_stack.tracking_uri}/transfer-laws/api/laws", timeout=30)
        yield server_stack.tracking_uri
        return
    except urllib.error.HTTPError as err:
        if err.code != 404:
            raise
    backend = os.environ.get("TL_MLFLOW_BACKEND_URI")
    if not backend:
        pytest.skip("the server does not serve /transfer-laws/ and TL_MLFLOW_BACKEND_URI is not set")
    from _servers import wsgi_server
    from flask import Flask

    from transfer_laws.plugin.page import register_law_page

    app = Flask("law-page")
    register_law_page(app, tracking_uri=backend)
    with wsgi_server(app) as root:
        yield root


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing: TL_SETUP_BROWSER=1 bash .ci/setup (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def seeded(server_stack: Any) -> dict[str, Any]:
    from mlflow import MlflowClient

    law = f"text-to-py{uuid.uuid4().hex[:8]}"
    client = MlflowClient(server_stack.tracking_uri, server_stack.tracking_uri)
    return {**seed_law(client, law, f"browser-{law}"), "law": law}


def _non_white_fraction(png: bytes) -> float:
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    pixels = list(image.getdata())
    return sum(1 for v in pixels if v < 200) / len(pixels)


def test_page_shows_fitted_law_plot_and_hover(browser: Any, page_root: str, seeded: dict[str, Any]) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    law = seeded["law"]
    page = browser.new_page(viewport={"width": 1200, "height": 1400})
    page.goto(f"{page_root}/transfer-laws/#law-{law}")
    section = page.locator(f"section#law-{law}")
    section.wait_for(timeout=30_000)
    assert "1.9e+04" in section.locator("table.params").inner_text()
    assert section.locator(".version-link").inner_text().endswith("v2")
    points = section.locator("circle.pt")
    assert points.count() == 4
    plot_png = section.locator("svg.fit-plot").screenshot(path=str(ARTIFACTS / f"plot-{law}.png"))
    assert _non_white_fraction(plot_png) > 0.01, "the fit plot rendered blank"
    points.first.hover()
    tip = section.locator(".tip")
    tip.wait_for(state="visible", timeout=5_000)
    assert any(rid in tip.inner_text() for rid in [*seeded["finetunes"], seeded["scratch"]])
    excluded = section.locator("ul.excluded").inner_text()
    # Both reasons come from the fit run's inputs.json (the refit's report), stored in S3 behind the server's
    # artifact proxy.
    assert "missing best_test_loss" in excluded and "no scratch curve: out of range" in excluded
    section.screenshot(path=str(ARTIFACTS / f"law-{law}.png"))
    page.close()


def test_lineage_links_open_mlflow_pages(browser: Any, page_root: str, server_stack: Any,
                                         seeded: dict[str, Any]) -> None:
    law = seeded["law"]
    page = browser.new_page()
    page.goto(f"{page_root}/transfer-laws/")
    section = page.locator(f"section#law-{law}")
    run_links = section.locator("table.runs a.run-link")
    assert run_links.count() == 4
    hrefs = {run_links.nth(i).get_attribute("href") for i in range(4)}
    ml = "?workflowType=machine_learning"  # every link opens MLflow's Model-training view
    expected = {f"/#/experiments/{seeded['exp']}/runs/{rid}{ml}" for rid in [*seeded["finetunes"], seeded["scratch"]]}
    assert {h[h.index("/#/"):] for h in hrefs} == expected
    assert section.locator("a.parent-link").get_attribute("href").endswith(f"/#/models/gpt-text/versions/3{ml}")
    # Follow one into MLflow's own UI (on the MLflow server): the run page renders the run's name.
    run_id = seeded["finetunes"][0]
    name = seeded["client"].get_run(run_id).info.run_name
    page.goto(f"{server_stack.tracking_uri}/#/experiments/{seeded['exp']}/runs/{run_id}")
    page.get_by_text(name).first.wait_for(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / f"mlflow-run-{law}.png"))
    page.close()


@pytest.fixture(scope="module")
def fitted(server_stack: Any) -> dict[str, Any]:
    """A law fitted by refit_law from synthetic runs of a known law (tests/law_runs.py), landed over HTTP."""
    from law_runs import land_finetunes, land_scratch_runs
    from mlflow import MlflowClient

    from transfer_laws.registry.refit import refit_law

    law = f"text-to-fit{uuid.uuid4().hex[:8]}"
    client = MlflowClient(server_stack.tracking_uri, server_stack.tracking_uri)
    exp = client.create_experiment(f"browser-{law}")
    land_scratch_runs(client, exp, law=law)
    land_finetunes(client, exp, 9, law=law)
    # Take the law's lock where the server's hook takes it (its backend database), as docs/ci-refit.md tells CI
    # to: with a process-local lock, a hook refit that read the runs earlier could register after this one.
    previous = os.environ.get("TRANSFER_LAWS_LOCK_DB")
    os.environ["TRANSFER_LAWS_LOCK_DB"] = os.environ.get("TL_MLFLOW_BACKEND_URI", previous or "")
    try:
        result = refit_law(law, tracking_uri=server_stack.tracking_uri, bootstrap=50)
    finally:
        if previous is None:
            os.environ.pop("TRANSFER_LAWS_LOCK_DB", None)
        else:
            os.environ["TRANSFER_LAWS_LOCK_DB"] = previous
    assert result.version, f"the synthetic law did not fit: {result}"
    name = schema.law_model_name(law)
    seen, since = _versions(client, name), time.monotonic()  # let the hook's queued refits finish
    while time.monotonic() - since < 15:
        time.sleep(1)
        now = _versions(client, name)
        if now != seen:
            seen, since = now, time.monotonic()
    return {"client": client, "law": law, "name": name}


def _versions(client: Any, name: str) -> list[int]:
    return sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))


def test_fitted_law_reads_as_the_papers_figures(browser: Any, page_root: str, fitted: dict[str, Any]) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    law = fitted["law"]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{page_root}/transfer-laws/#law-{law}")
    section = page.locator(f"section#law-{law}")
    section.wait_for(timeout=30_000)
    loss = section.locator("svg.fit-plot")
    assert loss.locator("path.scratch-curve").count() == 3, "one fitted scratch curve per size"
    assert loss.locator("g.gap").count() == 1 and "D_T = " in (loss.locator("g.gap").text_content() or "")
    legend = loss.locator("g.legend").text_content() or ""
    assert "fine-tune, in the fit" in legend and "from scratch" in legend and "N = 10\u2075" in legend
    ticks = [t.strip() for t in loss.locator("text.tick.x").all_text_contents()]
    assert len(ticks) >= 3 and all(t.startswith("10") for t in ticks), ticks
    d_t = section.locator("svg.d-t-plot")
    assert d_t.locator("path.band").count() == 3 and d_t.locator("path.law-line").count() == 3
    assert section.locator(".verdict").is_visible() and "Verdict" in section.locator(".verdict").inner_text()
    assert section.locator("table.history tr[data-version]").count() >= 1
    assert section.locator("svg.history-alpha").is_visible() and section.locator("svg.history-beta").is_visible()
    # The way back to MLflow, in MLflow's look: its side bar, font and ink.
    assert page.locator("nav.side a.back").get_attribute("href").endswith("/")
    font = page.evaluate("getComputedStyle(document.body).fontFamily")
    assert "Segoe UI" in font or "Roboto" in font
    png = loss.screenshot(path=str(ARTIFACTS / f"figure1-{law}.png"))
    assert _non_white_fraction(png) > 0.02
    d_t.screenshot(path=str(ARTIFACTS / f"d-t-{law}.png"))
    page.screenshot(path=str(ARTIFACTS / f"page-{law}.png"), full_page=True)
    page.close()


def test_refit_button_outcome_stays_on_screen(browser: Any, page_root: str, fitted: dict[str, Any]) -> None:
    law, client, name = fitted["law"], fitted["client"], fitted["name"]
    # Inputs unchanged would give "unchanged"; deleting the newest version makes the button's refit register anew.
    before = _versions(client, name)
    client.delete_model_version(name, str(before[-1]))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{page_root}/transfer-laws/")
    section = page.locator(f"section#law-{law}")
    assert section.locator("circle.pt").count() > 9, "the fitted law's runs are plotted"
    section.screenshot(path=str(ARTIFACTS / f"refit-before-{law}.png"))
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    with page.expect_response(lambda r: r.url.endswith("/transfer-laws/api/refit"), timeout=300_000) as info:
        section.locator("button.refit").click()
    assert info.value.status == 200
    status = page.locator(f"section#law-{law} .refit-status")
    status.filter(has_text="Registered version").wait_for(timeout=60_000)
    after = _versions(client, name)
    assert after[-1] > before[-1], (before, after)
    assert f"Registered version {after[-1]}" in status.inner_text()
    assert page.locator(f"section#law-{law} .version-link").inner_text().endswith(f"v{after[-1]}")
    page.wait_for_timeout(2_000)  # the message stays: no reload wipes it
    assert status.is_visible() and not navigations, navigations
    page.locator(f"section#law-{law}").screenshot(path=str(ARTIFACTS / f"refit-after-{law}.png"))
    # A second click finds nothing new and says so, in place.
    section = page.locator(f"section#law-{law}")
    section.locator("button.refit").click()
    page.locator(f"section#law-{law} .refit-status").filter(has_text="No new version").wait_for(timeout=300_000)
    assert _versions(client, name) == after
    page.close()
