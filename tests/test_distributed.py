"""Exact sharding and launcher detection for distributed jobs, without starting processes."""

from __future__ import annotations

import pytest

from transfer_laws.lightning_modules.data import per_rank_batch
from transfer_laws.lightning_modules.distributed import (
    EMPTY_WINDOW,
    ShardSampler,
    launch_rank,
    launcher_devices,
)


@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 33])
@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("batch", [1, 3, 4])
def test_every_window_on_exactly_one_rank_and_every_rank_the_same_batches(n: int, world: int, batch: int) -> None:
    for epoch in (0, 1):
        samplers = [ShardSampler(n, world, r, batch_size=batch, shuffle=True, seed=5) for r in range(world)]
        shards = []
        for s in samplers:
            s.set_epoch(epoch)
            shards.append(list(s))
        real = sorted(i for shard in shards for i in shard if i != EMPTY_WINDOW)
        assert real == list(range(n))  # each window once, none repeated
        assert len({len(shard) for shard in shards}) == 1  # same batch count on every rank: collectives match
        batches = [[shard[i: i + batch] for i in range(0, len(shard), batch)] for shard in shards]
        for i in range(len(batches[0])):
            held = sum(1 for rank in batches for w in rank[i] if w != EMPTY_WINDOW)
            assert samplers[0].windows_in_batch(i) == held  # the token count the module uses, per global batch
        assert sum(samplers[0].windows_in_batch(i) for i in range(len(batches[0]))) == n


def test_the_order_is_seeded_per_epoch_and_the_test_set_is_not_shuffled() -> None:
    a, b = (ShardSampler(20, 2, 0, batch_size=2, shuffle=True, seed=1) for _ in range(2))
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)
    test = ShardSampler(5, 2, 1, batch_size=2, shuffle=False, seed=1)
    assert list(test) == [1, 3, EMPTY_WINDOW]


def test_the_global_batch_is_split_evenly_or_refused() -> None:
    assert per_rank_batch(8, 2) == 4 and per_rank_batch(8, 1) == 8
    with pytest.raises(ValueError, match="global batch and must be divisible by the 3 processes"):
        per_rank_batch(8, 3)


def test_rank_and_layout_from_each_launcher() -> None:
    assert launch_rank({}) == 0 and launcher_devices({}) is None
    torchrun = {"RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "4"}
    assert launch_rank(torchrun) == 3 and launcher_devices(torchrun) == (2, 2)
    srun = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_NTASKS_PER_NODE": "4(x2)", "SLURM_NNODES": "2",
            "SLURM_JOB_NAME": "train"}
    assert launch_rank(srun) == 5 and launcher_devices(srun) == (4, 2)
    interactive = {**srun, "SLURM_JOB_NAME": "bash"}  # an interactive allocation is no launcher
    assert launch_rank(interactive) == 0 and launcher_devices(interactive) is None
    lightning_child = {"LOCAL_RANK": "1", "NODE_RANK": "0", "WORLD_SIZE": "2"}
    assert launch_rank(lightning_child) == 1


def test_settings_a_job_cannot_run_are_bad_input_before_any_run(sqlite_uri: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow import MlflowClient

    from transfer_laws.scripts import cli

    data = ["--corpus-max-mb", "0.5", "--tokenizer-max-mb", "0.5", "--vocab-size", "300", "--test-tokens", "2048",
            "--d-f-tokens", "1000", "--progress-bar", "false"]
    assert cli.main(["scratch", *data, "--train.strategy", "fsdp"]) == 2
    assert "needs CUDA GPUs" in capsys.readouterr().err
    assert cli.main(["scratch", *data, "--train.devices", "3", "--batch-size", "8"]) == 2
    err = capsys.readouterr().err
    assert "--batch-size 8 is the global batch and must be divisible by the 3 processes" in err
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    client = MlflowClient(sqlite_uri)
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])
