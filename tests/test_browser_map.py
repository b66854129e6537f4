"""The law page's transfer map in headless Chromium: two laws of python (tests/two_laws.py) on an embedded store, the
page served by a local Flask server, the map read and its query form used as a person would. Screenshots land in
test-artifacts/ (or TL_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_browser import browser  # noqa: F401 (the fixture: Debian's Chromium through Playwright)
from two_laws import CROSSING, TARGET, build_store, land_thin_law

pytestmark = [pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("TL_TEST_ARTIFACTS") or Path(__file__).resolve().parents[1] / "test-artifacts")


@pytest.fixture(scope="module")
def page_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing: TL_SETUP_BROWSER=1 bash .ci/setup (apt-get install chromium)")
    import mlflow
    from _servers import wsgi_server
    from flask import Flask

    from transfer_laws.plugin.page import register_law_page

    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("map-browser")
        uri = f"sqlite:///{home / 'mlflow.db'}"
        mp.setenv("TRANSFER_LAWS_HOME", str(home))
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        built = build_store(uri, bootstrap=100)
        land_thin_law(built["client"], built["exp"])
        app = Flask("map-page")
        register_law_page(app, tracking_uri=uri)
        try:
            with wsgi_server(app) as root:
                yield root
        finally:
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)


def test_map_reads_and_answers_which_checkpoint(browser: Any, page_root: str) -> None:  # noqa: F811
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.goto(f"{page_root}/transfer-laws/#map-{TARGET}")
    section = page.locator(f"section#map-{TARGET}")
    section.wait_for(timeout=30_000)
    assert section.locator("tr.map-row").count() == 3
    assert "Undetermined" in section.locator("tr.map-row[data-source=code]").inner_text()
    assert "mix" in section.locator("table.map-laws").inner_text()
    chart = section.locator("svg.map-lines")
    assert chart.is_visible() and chart.locator("path.source-line").count() == 3
    assert chart.locator("path.band").count() >= 2 and chart.locator("circle[data-crossing=mix-text]").count() == 1
    assert section.locator("svg.map-params.alpha").is_visible()
    crossing = section.locator("ul.crossings li[data-pair=mix-text]").inner_text()
    assert "within the data" in crossing and "below it mix transfers more" in crossing
    section.screenshot(path=str(ARTIFACTS / f"map-{TARGET}.png"))
    chart.screenshot(path=str(ARTIFACTS / f"map-lines-{TARGET}.png"))

    # Ask at a D_F past the crossing: the form reloads the page with the query, text now ranks first.
    section.locator("input[name=d_f]").fill(f"{CROSSING * 5:.3g}")
    section.locator("input[name=n]").fill("1e7")
    with page.expect_navigation():  # the form's GET reloads the page: wait for the new one, not the old one's load
        section.locator(".map-query button").click()
    page.wait_for_load_state()
    first = page.locator(f"section#map-{TARGET} tr.rank-row[data-rank='1']")
    assert first.get_attribute("data-source") == "text"
    assert "models:/pretrained-text@champion" in first.inner_text()
    page.locator(f"section#map-{TARGET} table.ranking").screenshot(path=str(ARTIFACTS / f"map-ranking-{TARGET}.png"))
    page.screenshot(path=str(ARTIFACTS / f"map-page-{TARGET}.png"), full_page=True)

    # Far beyond the runs, the undetermined law (which claims the most transfer) still ranks last, and says so.
    page.goto(f"{page_root}/transfer-laws/?target={TARGET}&n=1e9&d_f=1e5#map-{TARGET}")
    rows = page.locator(f"section#map-{TARGET} tr.rank-row")
    assert rows.count() == 3 and rows.nth(2).get_attribute("data-source") == "code"
    assert "Undetermined law" in rows.nth(2).inner_text() and "Extrapolation: N=1e+09" in rows.nth(0).inner_text()
    notes = page.locator(f"section#map-{TARGET} .map-note").all_inner_texts()
    assert any("code's point prediction is the best" in n for n in notes), notes
    page.locator(f"section#map-{TARGET}").screenshot(path=str(ARTIFACTS / f"map-caveats-{TARGET}.png"))
    page.close()
