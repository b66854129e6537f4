"""The transfer map on a real embedded store: two laws of python refitted from synthetic runs of known k, alpha, beta
(tests/two_laws.py), their tags in MLflow's registry, the target's map run, `choose`, `report --target`, the law
page's map block and /api/laws."""

from __future__ import annotations

import html as html_lib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from two_laws import CROSSING, TARGET, build_store, largest_n

from transfer_laws.registry import schema


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    import mlflow

    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("two-laws-home")
        uri = f"sqlite:///{home / 'mlflow.db'}"
        mp.setenv("TRANSFER_LAWS_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        yield {**build_store(uri), "home": home}
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from transfer_laws.scripts.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_law_models_carry_source_and_target_so_mlflows_list_filters(store: dict[str, Any]) -> None:
    client = store["client"]
    found = client.search_registered_models(f"tags.`{schema.LAW_TAG_TARGET}` = '{TARGET}'")
    assert sorted(m.name for m in found) == ["transfer-law-mix-to-python", "transfer-law-text-to-python"]
    only_mix = client.search_registered_models(f"tags.`{schema.LAW_TAG_SOURCE}` = 'mix'")
    assert [m.name for m in only_mix] == ["transfer-law-mix-to-python"]
    for source in ("text", "mix"):
        mv = client.get_model_version(schema.law_model_name(f"{source}-to-{TARGET}"), store["results"][source].version)
        assert mv.tags[schema.LAW_TAG_SOURCE] == source and mv.tags[schema.LAW_TAG_TARGET] == TARGET


def test_target_map_run_holds_the_comparison_chart(store: dict[str, Any], tmp_path: Path) -> None:
    client = store["client"]
    exp = client.get_experiment_by_name(schema.REFIT_EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], f"tags.`{schema.TAG_MAP_TARGET}` = '{TARGET}'")
    assert len(runs) == 1, "one map run per target, updated by each law's refit"
    run = runs[0]
    files = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, schema.MAP_ARTIFACT)}
    assert {"map.json", "d_t_by_source.svg", "alpha_by_source.svg", "beta_by_source.svg"} <= files
    local = client.download_artifacts(run.info.run_id, f"{schema.MAP_ARTIFACT}/map.json", str(tmp_path))
    doc = json.loads(Path(local).read_text())
    assert sorted(law["source"] for law in doc["laws"]) == ["mix", "text"], "the second refit saw both laws"
    assert {"mix.alpha", "text.alpha", "mix.beta_low", "text.k_chars"} <= set(run.data.metrics)
    assert "Transfer map of target `python`" in run.data.tags[schema.MLFLOW_NOTE]
    svg = Path(client.download_artifacts(run.info.run_id, f"{schema.MAP_ARTIFACT}/d_t_by_source.svg",
                                         str(tmp_path))).read_text()
    assert svg.count('class="source-line"') == 2 and "crossing" in svg


@pytest.mark.parametrize(("d_f", "first", "second"), [(1e5, "mix", "text"), (3e6, "text", "mix")])
def test_choose_names_the_checkpoint_on_each_side_of_the_crossing(store: dict[str, Any], capsys: Any, d_f: float,
                                                                  first: str, second: str) -> None:
    assert d_f < CROSSING if first == "mix" else d_f > CROSSING
    code, out, err = _cli(capsys, "choose", "--target", TARGET, "--n", str(largest_n()), "--d-f", str(d_f),
                          "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert [r["source"] for r in doc["ranking"]] == [first, second]
    assert doc["ranking"][0]["checkpoint"] == store["champions"][first]  # the champion is the largest N
    assert not doc["ranking"][0]["vs_next"]["indistinguishable"]
    code, text, _ = _cli(capsys, "choose", "--target", TARGET, "--n", str(largest_n()), "--d-f", str(d_f))
    assert code == 0 and f"=> fine-tune from {store['champions'][first]}" in text
    assert "k = " in text and "per character" in text and "cross at D_F" in text


def test_choose_at_a_size_without_champion_names_its_version(store: dict[str, Any], capsys: Any) -> None:
    code, out, _ = _cli(capsys, "choose", "--target", TARGET, "--n", "1e5", "--d-f", "1e5", "--json")
    assert code == 0
    assert json.loads(out)["ranking"][0]["checkpoint"] == "models:/pretrained-mix/1"
    code, out, _ = _cli(capsys, "choose", "--target", TARGET, "--n", "3e5", "--d-f", "1e5", "--unit", "chars")
    assert code == 0 and "no registered checkpoint at N=3e+05" in out and "nats/char" in out


def test_choose_bad_input_is_one_line_and_exit_2(store: dict[str, Any], capsys: Any) -> None:
    code, out, err = _cli(capsys, "choose", "--target", "pyhton", "--n", "1e6", "--d-f", "1e5")
    assert code == 2 and "no law of target 'pyhton'" in err and "python" in err and "Traceback" not in err
    code, _, err = _cli(capsys, "choose", "--target", TARGET, "--n", "-5", "--d-f", "1e5")
    assert code == 2 and "Traceback" not in err
    code, _, err = _cli(capsys, "choose", "--target", "Bad'Target", "--n", "1e6", "--d-f", "1e5")
    assert code == 2 and "--target" in err


def test_report_target_writes_the_map(store: dict[str, Any], capsys: Any, tmp_path: Path) -> None:
    code, out, err = _cli(capsys, "report", "--target", TARGET, "--out", str(tmp_path / "map"))
    assert code == 0, err
    assert {p.name for p in (tmp_path / "map").iterdir()} == {"map.json", "summary.txt", "d_t_by_source.svg",
                                                             "alpha_by_source.svg", "beta_by_source.svg"}
    assert "transfer map of target python" in out and "which checkpoint at N" in out
    code, out, _ = _cli(capsys, "report", "--target", TARGET, "--unit", "chars", "--out", str(tmp_path / "chars"))
    assert code == 0 and "nats/char" in out
    assert json.loads((tmp_path / "chars" / "map.json").read_text())["unit"] == "chars"


def test_source_comparison_for_the_demo(store: dict[str, Any], capsys: Any) -> None:
    from transfer_laws.scripts._map_text import print_source_comparison

    result = print_source_comparison(TARGET, "text", "mix", tracking_uri=store["uri"])
    out = capsys.readouterr().out
    assert result["transfers_more"]["answer"] == "yes" and result["alpha_lower"]["answer"] == "yes"
    assert result["beta_same"]["answer"] == "consistent"
    assert "does mix transfer more at small D_F" in out and "is beta the same? consistent" in out
    with pytest.raises(LookupError, match="no fitted law from source code"):
        print_source_comparison(TARGET, "text", "code", tracking_uri=store["uri"])
    # demo --full ends with the same comparison of its two pinned laws
    from transfer_laws.scripts import demo

    demo._print_source_comparison(store["uri"])
    out = capsys.readouterr().out
    assert "mix -> python against text -> python" in out and "is beta the same? consistent" in out


def test_law_page_and_api_show_the_map(store: dict[str, Any]) -> None:
    from flask import Flask

    from transfer_laws.plugin.page import register_law_page

    app = Flask("map")
    register_law_page(app, tracking_uri=store["uri"])
    web = app.test_client()
    html = web.get("/transfer-laws/").get_data(as_text=True)
    assert f'id="map-{TARGET}"' in html and html.count('class="map-row') == 2
    assert 'class="ranking"' in html and "pretrained-" in html and 'class="chart map-lines"' in html
    asked = web.get(f"/transfer-laws/?target={TARGET}&n=1e7&d_f=3e6").get_data(as_text=True)
    first = asked.index('data-rank="1"')
    assert asked[first - 200:first].count('data-source="text"') == 1, "at large D_F text ranks first"
    bad = web.get(f"/transfer-laws/?target={TARGET}&n=abc").get_data(as_text=True)
    assert "n='abc' is not a positive number" in html_lib.unescape(bad)
    api = web.get(f"/transfer-laws/api/laws?target={TARGET}&n=1e7&d_f=1e5").get_json()
    (doc,) = api["targets"]
    assert doc["target"] == TARGET and [r["source"] for r in doc["ranking"]] == ["mix", "text"]
    assert {c["below"] for c in doc["crossings"]} == {"mix"} and doc["crossings"][0]["within_data"]


@pytest.mark.server
def test_map_over_the_server_stack(server_stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over HTTP (PostgreSQL + S3 behind `mlflow server --app-name transfer-laws`): the refits write the target's map
    run with its charts in S3, and the server's own law page and /api/laws draw the map from its artifact store."""
    import urllib.request
    import uuid

    target = f"py{uuid.uuid4().hex[:8]}"
    # The server's hook refits as the runs land: take the laws' locks where it does (docs/ci-refit.md).
    monkeypatch.setenv("TRANSFER_LAWS_LOCK_DB", os.environ.get("TL_MLFLOW_BACKEND_URI", ""))
    built = build_store(server_stack.tracking_uri, bootstrap=100, target=target)
    client = built["client"]
    exp = client.get_experiment_by_name(schema.REFIT_EXPERIMENT)
    (run,) = client.search_runs([exp.experiment_id], f"tags.`{schema.TAG_MAP_TARGET}` = '{target}'")
    files = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, schema.MAP_ARTIFACT)}
    assert {"map.json", "d_t_by_source.svg"} <= files and {"mix.alpha", "text.alpha"} <= set(run.data.metrics)
    found = client.search_registered_models(f"tags.`{schema.LAW_TAG_TARGET}` = '{target}'")
    assert sorted(m.name for m in found) == [f"transfer-law-mix-to-{target}", f"transfer-law-text-to-{target}"]
    base = f"{server_stack.tracking_uri}/transfer-laws"
    with urllib.request.urlopen(f"{base}/api/laws?target={target}&n=1e7&d_f=3e6", timeout=120) as response:
        docs = {d["target"]: d for d in json.load(response)["targets"]}
    assert [r["source"] for r in docs[target]["ranking"]] == ["text", "mix"]
    with urllib.request.urlopen(f"{base}/", timeout=120) as response:
        assert f'id="map-{target}"' in response.read().decode()


def test_page_map_holds_only_the_laws_the_page_shows(store: dict[str, Any]) -> None:
    """Under basic auth the page lists only the laws a user may read; the map must not bring the others back."""
    from transfer_laws.plugin.page_data import collect_laws
    from transfer_laws.plugin.page_map import target_maps

    views = [v for v in collect_laws(store["client"]) if v.law == f"text-to-{TARGET}"]
    (doc,) = target_maps(store["client"], views)
    assert [law["source"] for law in doc["laws"]] == ["text"] and [r["source"] for r in doc["ranking"]] == ["text"]
    assert target_maps(store["client"], []) == []


def test_page_maps_are_bounded_to_the_shown_targets_and_reused(store: dict[str, Any],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from transfer_laws.plugin import page_map
    from transfer_laws.plugin.page_data import collect_laws
    from transfer_laws.registry import transfer_map

    views = collect_laws(store["client"])
    assert page_map.target_maps(store["client"], views, targets={"rust"}) == [], "no law of the page is of rust"
    reads = []
    real = transfer_map.read_target
    # counted where the page calls it (page_map imports the function itself)
    monkeypatch.setattr(page_map, "read_target", lambda *a, **k: reads.append(a[1]) or real(*a, **k))
    args = {"target": TARGET, "n": "3e6"}  # a query no other test asked: a fresh map, then the same one reused
    first = page_map.target_maps(store["client"], views, args)
    second = page_map.target_maps(store["client"], views, args)
    assert reads == [TARGET] and first == second and first[0]["n"] == 3e6
