"""The README's main job: `transfer-laws demo --quick` on the embedded default (SQLite store, no server).

Real corpora, tokenizer and training; the law is refitted in-process after every landing, and only the last
landing renders the plots (the slowest part of a refit). The store is the session's ``demo_store`` (conftest.py),
which the documented commands (test_doc_commands.py) then run against.
"""

from __future__ import annotations

import pytest
from conftest import DemoStore

from transfer_laws.registry.schema import CKPT_TAG_N, DEFAULT_CHECKPOINT_ALIAS, PLOTS_ARTIFACT, law_model_name

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def test_quick_demo_on_the_embedded_store(demo_store: DemoStore) -> None:
    from mlflow import MlflowClient

    out, uri = demo_store.output, demo_store.uri
    assert f"transfer-laws serve --backend-store-uri {uri}" in out
    assert "Pretraining on English" in out  # the findings section, said either way

    client = MlflowClient(uri, uri)
    versions = sorted(client.search_model_versions(f"name = '{law_model_name('text-to-python')}'"),
                      key=lambda v: int(v.version))
    assert len(versions) >= 2, "the law is refitted as runs land, not once at the end"
    with_plots = [v.version for v in versions if client.list_artifacts(v.run_id, PLOTS_ARTIFACT)]
    assert with_plots == [versions[-1].version]


def test_demo_crowns_the_largest_checkpoint(demo_store: DemoStore) -> None:
    """`finetune --from models:/pretrained-text@champion` (README) starts from the largest pretrained size."""
    from mlflow import MlflowClient

    client = MlflowClient(demo_store.uri, demo_store.uri)
    champion = client.get_model_version_by_alias("pretrained-text", DEFAULT_CHECKPOINT_ALIAS)
    sizes = {v.version: int(v.tags[CKPT_TAG_N]) for v in client.search_model_versions("name = 'pretrained-text'")}
    assert int(champion.tags[CKPT_TAG_N]) == max(sizes.values())
    aliases = set(client.get_registered_model("pretrained-text").aliases)
    assert {"demo-2x32", "demo-2x64", DEFAULT_CHECKPOINT_ALIAS} <= aliases
