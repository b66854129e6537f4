"""The walking skeleton end to end: `transfer-laws demo --quick` against the real server stack.

PostgreSQL holds the runs, the S3 endpoint holds the artifacts, the MLflow server runs our app plugin (whose hook
refits the law as runs land). Real corpora, real tokenizer, real training.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from transfer_laws.registry import schema

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def quick_demo(server_stack, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the quick demo once into a fresh experiment on the server."""
    import os

    from transfer_laws.scripts import cli

    home = tmp_path_factory.mktemp("tl-home")
    previous = os.environ.get("TRANSFER_LAWS_HOME")
    os.environ["TRANSFER_LAWS_HOME"] = str(home)
    experiment = f"quick-{home.name}"
    try:
        code = cli.main(["demo", "--quick", "--tracking-uri", server_stack.tracking_uri, "--experiment", experiment,
                         "--checkpoint-name", f"pretrained-text-{home.name}"])
    finally:
        if previous is None:
            os.environ.pop("TRANSFER_LAWS_HOME", None)
        else:
            os.environ["TRANSFER_LAWS_HOME"] = previous
    assert code == 0
    return {"experiment": experiment, "checkpoint": f"pretrained-text-{home.name}", "home": Path(home)}


def _client(server_stack):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=server_stack.tracking_uri, registry_uri=server_stack.tracking_uri)


def test_runs_carry_tags_and_params(server_stack, quick_demo: dict) -> None:
    client = _client(server_stack)
    experiment = client.get_experiment_by_name(quick_demo["experiment"])
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    roles = [r.data.tags.get(schema.TAG_ROLE) for r in runs]
    assert roles.count(schema.ROLE_PRETRAIN) == 2
    assert roles.count(schema.ROLE_FINETUNE) == 4
    assert roles.count(schema.ROLE_SCRATCH) == 8
    for r in runs:
        assert r.info.status == "FINISHED"
        assert int(r.data.params[schema.PARAM_N]) > 0
        tokens, chars = schema.data_params(r.data.tags[schema.TAG_ROLE])  # D_F only on fine-tunes
        assert int(r.data.params[tokens]) > 0 and int(r.data.params[chars]) > 0
        assert (schema.PARAM_D_F_TOKENS in r.data.params) == (r.data.tags[schema.TAG_ROLE] == schema.ROLE_FINETUNE)
        assert r.data.metrics[schema.METRIC_BEST_TEST_LOSS] > 0
        if r.data.tags[schema.TAG_ROLE] == schema.ROLE_FINETUNE:
            parent = r.data.tags[schema.TAG_PARENT]
            assert parent.startswith(f"models:/{quick_demo['checkpoint']}/")
            assert r.data.tags[schema.TAG_LAW] == "text-to-python"
            # search_runs leaves model inputs out; the run's own page (get_run) shows them.
            inputs = client.get_run(r.info.run_id).inputs
            assert inputs.model_inputs, "the fine-tune records its parent checkpoint as an input model"


def test_law_version_holds_k_alpha_beta(server_stack, quick_demo: dict) -> None:
    client = _client(server_stack)
    mv = client.get_model_version_by_alias(schema.law_model_name("text-to-python"), schema.LAW_ALIAS)
    metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
    for key in ("k", "alpha", "beta"):
        assert key in metrics, f"law version {mv.version} lacks metric {key}"
    assert metrics["k"] > 0


def test_artifacts_are_objects_in_the_bucket(server_stack, quick_demo: dict) -> None:
    s3 = server_stack.s3_client()
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=server_stack.bucket):
        keys += [o["Key"] for o in page.get("Contents", [])]
    assert any(k.endswith("model.safetensors") for k in keys), "checkpoint weights are in S3"
    client = _client(server_stack)
    mv = client.get_model_version_by_alias(schema.law_model_name("text-to-python"), schema.LAW_ALIAS)
    model_id = mv.source.removeprefix("models:/")
    assert any(model_id in k for k in keys), "the law model's artifacts are in S3"
