"""The reader: finished runs of a law across experiments, paginated, with reasons for what it leaves out."""

from __future__ import annotations

import pytest
from law_runs import LAW, finetune_loss, land_finetunes, land_run, land_scratch_runs, scratch_loss
from mlflow import MlflowClient

from transfer_laws.registry import reader
from transfer_laws.registry.reader import known_laws, law_filters, laws_for_run, read_law_inputs
from transfer_laws.registry.schema import (
    METRIC_BEST_TEST_LOSS,
    PARAM_D_F_CHARS,
    PARAM_D_F_TOKENS,
    PARAM_N,
    ROLE_FINETUNE,
    ROLE_PRETRAIN,
    ROLE_SCRATCH,
    TAG_LAW,
    TAG_PARENT,
    TAG_ROLE,
)


@pytest.fixture
def client(sqlite_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=sqlite_uri, registry_uri=sqlite_uri)


def test_reads_finished_runs_of_the_law_across_experiments_and_pages(
    client: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = client.create_experiment("a"), client.create_experiment("b")
    scratch = land_scratch_runs(client, first)
    finetunes = land_finetunes(client, second, 5)
    running = land_finetunes(client, first, 1, finish=False)
    other_law = land_run(client, first, ROLE_FINETUNE, 1e6, 1e6, 3.0, law="text-to-java")
    other_target = land_run(client, first, ROLE_SCRATCH, 1e6, 1e6, 3.0, law="text-to-java")
    monkeypatch.setattr(reader, "PAGE_SIZE", 4)  # force several pages per search

    inputs = read_law_inputs(LAW, client)

    assert sorted(inputs.run_ids) == sorted(scratch + finetunes)
    assert not {running[0], other_law, other_target} & set(inputs.run_ids)
    assert inputs.excluded == {}
    by_id = {p.run_id: p for p in inputs.points}
    point = by_id[finetunes[0]]
    assert point.role == ROLE_FINETUNE and point.n_params == 100_000 and point.d_f_tokens == 100_000
    assert point.best_test_loss == pytest.approx(finetune_loss(1e5, 1e5))
    assert point.d_f_chars == 300_000
    assert by_id[scratch[0]].best_test_loss == pytest.approx(scratch_loss(1e5, 1e6))


def test_runs_missing_numbers_or_with_another_tokenizer_are_excluded_with_reasons(client: MlflowClient) -> None:
    exp = client.create_experiment("a")
    good = land_finetunes(client, exp, 3)
    no_loss = land_run(client, exp, ROLE_FINETUNE, 1e6, 1e6, None)
    other_tok = land_run(client, exp, ROLE_FINETUNE, 1e6, 2e6, 3.0, digest="another")
    negative = land_run(client, exp, ROLE_FINETUNE, 1e6, 3e6, -1.0)

    inputs = read_law_inputs(LAW, client)

    assert sorted(inputs.run_ids) == sorted(good)
    assert inputs.excluded[no_loss] == "missing best_test_loss"
    assert "tokenizer digest another" in inputs.excluded[other_tok]
    assert "best_test_loss" in inputs.excluded[negative] and "positive" in inputs.excluded[negative]
    # Every run read, excluded ones too, knows its experiment: the version card links its page there.
    assert {inputs.run_experiments[r] for r in [*good, no_loss, other_tok, negative]} == {exp}


def test_deleted_runs_and_deleted_experiments_are_not_read(client: MlflowClient) -> None:
    kept, gone = client.create_experiment("kept"), client.create_experiment("gone")
    kept_runs = land_finetunes(client, kept, 2)
    land_finetunes(client, gone, 2)
    client.delete_experiment(gone)
    client.delete_run(kept_runs[0])
    assert read_law_inputs(LAW, client).run_ids == [kept_runs[1]]


def test_laws_for_run(client: MlflowClient) -> None:
    exp = client.create_experiment("a")
    finetune = land_finetunes(client, exp, 1)[0]
    land_run(client, exp, ROLE_FINETUNE, 1e6, 1e6, 3.0, law="code-to-python")
    land_run(client, exp, ROLE_FINETUNE, 1e6, 1e6, 3.0, law="text-to-java")
    scratch = land_run(client, exp, ROLE_SCRATCH, 1e6, 1e6, 3.0)
    pretrain = land_run(client, exp, ROLE_PRETRAIN, 1e6, 1e6, 3.0)

    assert laws_for_run(finetune, client) == [LAW]
    assert laws_for_run(scratch, client) == ["code-to-python", LAW]
    assert laws_for_run(pretrain, client) == []
    assert known_laws(client, source="text") == ["text-to-java", LAW]


def test_bad_law_names_are_refused() -> None:
    with pytest.raises(ValueError, match="form"):
        law_filters("python")
    with pytest.raises(ValueError, match="quote"):
        law_filters("text-to-py'thon")


@pytest.mark.parametrize(("key", "value"), [("N", "inf"), ("N", "1e400"), ("N", "-inf"), ("N", "nan"),
                                            ("D_F_tokens", "inf"), ("D_F_chars", "inf"), ("D_F_chars", "-5")])
def test_a_non_finite_number_excludes_its_run_and_nothing_else(client: MlflowClient, key: str, value: str) -> None:
    from mlflow.entities import Metric, Param, RunTag

    exp = client.create_experiment("a")
    good = land_finetunes(client, exp, 3)
    poisoned = client.create_run(exp).info.run_id
    params = {PARAM_N: "1000000", PARAM_D_F_TOKENS: "5000000", PARAM_D_F_CHARS: "15000000", key: value}
    client.log_batch(poisoned, metrics=[Metric(METRIC_BEST_TEST_LOSS, 3.0, 0, 0)],
                     params=[Param(k, v) for k, v in params.items()],
                     tags=[RunTag(TAG_ROLE, ROLE_FINETUNE), RunTag(TAG_LAW, LAW)])
    client.set_terminated(poisoned, "FINISHED")

    inputs = read_law_inputs(LAW, client)  # raised OverflowError for inf/1e400 before the fix

    assert sorted(inputs.run_ids) == sorted(good)
    assert key in inputs.excluded[poisoned] and "finite" in inputs.excluded[poisoned]


def test_crafted_law_names_are_not_laws(client: MlflowClient) -> None:
    exp = client.create_experiment("a")
    land_finetunes(client, exp, 1)
    for name in ("transfer-law-nodash", "transfer-law-q'uote-to-python", "transfer-law-Text-to-python"):
        client.create_registered_model(name)
    crafted = land_run(client, exp, ROLE_FINETUNE, 1e6, 1e6, 3.0, law="te'xt-to-python")
    assert known_laws(client) == [LAW]
    assert laws_for_run(crafted, client) == []


def test_fine_tunes_without_a_registered_parent_are_excluded_with_reasons(client: MlflowClient) -> None:
    exp = client.create_experiment("a")
    good = land_finetunes(client, exp, 3)
    orphan = land_run(client, exp, ROLE_FINETUNE, 1e6, 4e6, 3.0)
    forged = land_run(client, exp, ROLE_FINETUNE, 1e6, 5e6, 3.0)
    client.delete_tag(orphan, TAG_PARENT)
    client.set_tag(forged, TAG_PARENT, "models:/synthetic-parent/99")

    inputs = read_law_inputs(LAW, client)

    assert sorted(inputs.run_ids) == sorted(good)
    assert "without a parent checkpoint" in inputs.excluded[orphan]
    assert inputs.excluded[forged] == "parent checkpoint models:/synthetic-parent/99 is not in the registry"
