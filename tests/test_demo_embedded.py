"""The README's main job: `transfer-laws demo --quick` on the embedded default (SQLite store, no server).

Real corpora, tokenizer and training; the law is refitted in-process after every landing, and only the last
landing renders the plots (the slowest part of a refit).
"""

from __future__ import annotations

import pytest

from transfer_laws.registry.schema import PLOTS_ARTIFACT, law_model_name

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def test_quick_demo_on_the_embedded_store(sqlite_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow import MlflowClient

    from transfer_laws.scripts import cli

    assert cli.main(["demo", "--quick"]) == 0
    out = capsys.readouterr().out
    assert f"mlflow ui --backend-store-uri {sqlite_uri}" in out
    assert "Pretraining on English" in out  # the findings section, said either way

    client = MlflowClient(sqlite_uri)
    versions = sorted(client.search_model_versions(f"name = '{law_model_name('text-to-python')}'"),
                      key=lambda v: int(v.version))
    assert len(versions) >= 2, "the law is refitted as runs land, not once at the end"
    with_plots = [v.version for v in versions if client.list_artifacts(v.run_id, PLOTS_ARTIFACT)]
    assert with_plots == [versions[-1].version]
