"""The reader, a contract over every store: finished runs of a law across experiments, paginated, with reasons for
what it leaves out."""

from __future__ import annotations

import pytest
from _stores import Store
from law_runs import finetune_loss, land_finetunes, land_run, land_scratch_runs, scratch_loss
from mlflow import MlflowClient

from transfer_laws.registry import reader
from transfer_laws.registry.reader import known_laws, law_filters, laws_for_run, read_law_inputs, read_run_by_id
from transfer_laws.registry.schema import (
    LAW_MODEL_PREFIX,
    METRIC_BEST_TEST_LOSS,
    PARAM_D_F_CHARS,
    PARAM_D_F_TOKENS,
    PARAM_D_PRETRAIN_TOKENS,
    PARAM_D_TOKENS,
    PARAM_N,
    ROLE_FINETUNE,
    ROLE_PRETRAIN,
    ROLE_SCRATCH,
    TAG_LAW,
    TAG_PARENT,
    TAG_ROLE,
    parse_law,
)


@pytest.fixture
def client(store: Store) -> MlflowClient:
    return store.client()


def test_reads_finished_runs_of_the_law_across_experiments_and_pages(
    store: Store, client: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    law, writer = store.law(), store.writer()
    source, target = parse_law(law)
    first, second = store.experiment("a"), store.experiment("b")
    scratch = land_scratch_runs(writer, first, law=law)
    finetunes = land_finetunes(writer, second, 5, law=law)
    running = land_finetunes(writer, first, 1, law=law, finish=False)
    other_law = land_run(writer, first, ROLE_FINETUNE, 1e6, 1e6, 3.0, law=f"{source}-to-other")
    other_target = land_run(writer, first, ROLE_SCRATCH, 1e6, 1e6, 3.0, law=f"{target}-to-other")
    monkeypatch.setattr(reader, "PAGE_SIZE", 4)  # force several pages per search

    inputs = read_law_inputs(law, client)

    assert sorted(inputs.run_ids) == sorted(scratch + finetunes)
    assert not {running[0], other_law, other_target} & set(inputs.run_ids)
    assert inputs.excluded == {}
    by_id = {p.run_id: p for p in inputs.points}
    point = by_id[finetunes[0]]
    assert point.role == ROLE_FINETUNE and point.n_params == 100_000 and point.d_f_tokens == 100_000
    assert point.best_test_loss == pytest.approx(finetune_loss(1e5, 1e5))
    assert point.d_f_chars == 300_000
    assert by_id[scratch[0]].best_test_loss == pytest.approx(scratch_loss(1e5, 1e6))
    assert point.experiment_id == second and point.name


def test_runs_missing_numbers_or_with_another_tokenizer_are_excluded_with_reasons(
    store: Store, client: MlflowClient
) -> None:
    law, writer, exp = store.law(), store.writer(), store.experiment()
    good = land_finetunes(writer, exp, 3, law=law)
    no_loss = land_run(writer, exp, ROLE_FINETUNE, 1e6, 1e6, None, law=law)
    other_tok = land_run(writer, exp, ROLE_FINETUNE, 1e6, 2e6, 3.0, law=law, digest="another")
    negative = land_run(writer, exp, ROLE_FINETUNE, 1e6, 3e6, -1.0, law=law)

    inputs = read_law_inputs(law, client)

    assert sorted(inputs.run_ids) == sorted(good)
    assert inputs.excluded[no_loss] == "missing best_test_loss"
    assert "tokenizer digest another" in inputs.excluded[other_tok]
    assert "best_test_loss" in inputs.excluded[negative] and "positive" in inputs.excluded[negative]
    # Every run read, excluded ones too, knows its experiment: the version card links its page there.
    assert {inputs.run_experiments[r] for r in [*good, no_loss, other_tok, negative]} == {exp}


def test_deleted_runs_and_deleted_experiments_are_not_read(store: Store, client: MlflowClient) -> None:
    law, writer = store.law(), store.writer()
    kept, gone = store.experiment("kept"), store.experiment("gone")
    kept_runs = land_finetunes(writer, kept, 2, law=law)
    land_finetunes(writer, gone, 2, law=law)
    client.delete_experiment(gone)
    client.delete_run(kept_runs[0])
    assert read_law_inputs(law, client).run_ids == [kept_runs[1]]


def test_laws_for_run_and_known_laws(store: Store, client: MlflowClient) -> None:
    law, writer, exp = store.law(), store.writer(), store.experiment()
    source, target = parse_law(law)
    sibling, other = f"{source}.x-to-{target}", f"{source}-to-{target}.y"
    finetune = land_finetunes(writer, exp, 1, law=law)[0]
    land_run(writer, exp, ROLE_FINETUNE, 1e6, 1e6, 3.0, law=sibling)
    land_run(writer, exp, ROLE_FINETUNE, 1e6, 1e6, 3.0, law=other)
    scratch = land_run(writer, exp, ROLE_SCRATCH, 1e6, 1e6, 3.0, law=law)
    pretrain = land_run(writer, exp, ROLE_PRETRAIN, 1e6, 1e6, 3.0, law=law)

    assert laws_for_run(finetune, client) == [law]
    assert laws_for_run(scratch, client) == sorted([sibling, law])
    assert laws_for_run(pretrain, client) == []
    assert known_laws(client, source=source) == sorted([law, other])


def test_bad_law_names_are_refused() -> None:
    with pytest.raises(ValueError, match="form"):
        law_filters("python")
    with pytest.raises(ValueError, match="quote"):
        law_filters("text-to-py'thon")


POISON = [("N", "inf"), ("N", "1e400"), ("N", "-inf"), ("N", "nan"), ("D_F_tokens", "inf"), ("D_F_chars", "inf"),
          ("D_F_chars", "-5")]


def test_a_non_finite_number_excludes_its_run_and_nothing_else(store: Store, client: MlflowClient) -> None:
    from mlflow.entities import Metric, Param, RunTag

    law, writer, exp = store.law(), store.writer(), store.experiment()
    good = land_finetunes(writer, exp, 3, law=law)
    poisoned = {}
    for key, value in POISON:
        run_id = writer.create_run(exp).info.run_id
        params = {PARAM_N: "1000000", PARAM_D_F_TOKENS: "5000000", PARAM_D_F_CHARS: "15000000", key: value}
        writer.log_batch(run_id, metrics=[Metric(METRIC_BEST_TEST_LOSS, 3.0, 0, 0)],
                         params=[Param(k, v) for k, v in params.items()],
                         tags=[RunTag(TAG_ROLE, ROLE_FINETUNE), RunTag(TAG_LAW, law)])
        writer.set_terminated(run_id, "FINISHED")
        poisoned[run_id] = key

    inputs = read_law_inputs(law, client)  # raised OverflowError for inf/1e400 before the fix

    assert sorted(inputs.run_ids) == sorted(good)
    for run_id, key in poisoned.items():
        assert key in inputs.excluded[run_id] and "finite" in inputs.excluded[run_id]


def test_a_run_by_id_says_which_param_its_data_was_read_from(store: Store, client: MlflowClient) -> None:
    """``read_run_by_id`` (the lineage's reader): the run as ``read_run`` parses it, None for no id or an unknown one;
    ``tokens_param`` names the param the data count came from, by role or from before the split."""
    from mlflow.entities import Metric, Param, RunTag

    writer, exp = store.writer(), store.experiment()
    runs = {}
    for role, key in ((ROLE_FINETUNE, PARAM_D_F_TOKENS), (ROLE_SCRATCH, PARAM_D_TOKENS),
                      (ROLE_SCRATCH, PARAM_D_F_TOKENS), (ROLE_PRETRAIN, PARAM_D_PRETRAIN_TOKENS)):
        run_id = writer.create_run(exp).info.run_id
        writer.log_batch(run_id, metrics=[Metric(METRIC_BEST_TEST_LOSS, 3.5, 0, 0)],
                         params=[Param(PARAM_N, "1000"), Param(key, "2500")], tags=[RunTag(TAG_ROLE, role)])
        runs[run_id] = (role, key)

    for run_id, (role, key) in runs.items():
        run = read_run_by_id(client, run_id)
        assert run is not None and (run.role, run.tokens_param) == (role, key)
        assert (run.n_params, run.d_f_tokens, run.best_test_loss, run.status) == (1000, 2500, 3.5, "RUNNING")
    assert read_run_by_id(client, None) is None and read_run_by_id(client, "0" * 32) is None


def test_crafted_law_names_are_not_laws(store: Store, client: MlflowClient) -> None:
    law, writer, exp = store.law(), store.writer(), store.experiment()
    source, target = parse_law(law)
    land_finetunes(writer, exp, 1, law=law)
    crafted_laws = [f"{source}nodash", f"{source}'q-to-{target}", f"{source.upper()}-to-{target}"]
    for crafted_law in crafted_laws:
        client.create_registered_model(f"{LAW_MODEL_PREFIX}{crafted_law}")
    crafted = land_run(writer, exp, ROLE_FINETUNE, 1e6, 1e6, 3.0, law=f"{source}'x-to-{target}")
    assert known_laws(client, target=target) == [law]
    every = known_laws(client)
    assert law in every and not set(crafted_laws) & set(every)
    assert laws_for_run(crafted, client) == []


def test_fine_tunes_without_a_registered_parent_are_excluded_with_reasons(store: Store, client: MlflowClient) -> None:
    law, writer, exp = store.law(), store.writer(), store.experiment()
    good = land_finetunes(writer, exp, 3, law=law)
    orphan = land_run(writer, exp, ROLE_FINETUNE, 1e6, 4e6, 3.0, law=law)
    forged = land_run(writer, exp, ROLE_FINETUNE, 1e6, 5e6, 3.0, law=law)
    client.delete_tag(orphan, TAG_PARENT)
    client.set_tag(forged, TAG_PARENT, "models:/synthetic-parent/99")

    inputs = read_law_inputs(law, client)

    assert sorted(inputs.run_ids) == sorted(good)
    assert "without a parent checkpoint" in inputs.excluded[orphan]
    assert inputs.excluded[forged] == "parent checkpoint models:/synthetic-parent/99 is not in the registry"
