"""A sweep worker that is itself a distributed job (``torchrun ... sweep --worker``): every trial is one DDP run.

Only global rank 0 talks to Optuna: it pops a trial as any worker does and sends the cell to the other ranks, and
all of them train it together (one MLflow run, written by rank 0; see ``plugin/training.py``); when the study has
nothing left, rank 0 tells them to stop. A trial that fails on any rank ends the whole job with a non-zero exit and
leaves the trial RUNNING without heartbeats, so the study retries it as it retries a crashed worker's trial.

The job's process groups live for all its trials (each run trains in the job's default group) and end with the job,
on every rank, as the runs' own groups do (``plugin/training.py``): after a last barrier when every rank got to the
end, at once when one failed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from transfer_laws.plugin.recipes import BadInput
from transfer_laws.plugin.sweeps.args import SweepArgs
from transfer_laws.plugin.sweeps.say import warn
from transfer_laws.plugin.sweeps.study import Cell, TrainCell

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

Message = tuple[Cell, int, dict[str, str] | None] | None
"""What rank 0 sends the other ranks: (cell, trial number, the run's extra tags), or None: stop."""


def job_size() -> int:
    """Processes in this job as its launcher (torchrun) set them; 1 for a plain process."""
    return int(os.environ.get("WORLD_SIZE", 1)) if "RANK" in os.environ else 1


def check_job(args: SweepArgs) -> None:
    """What a distributed worker cannot do, refused before anything starts."""
    if not args.worker:
        raise BadInput("start the sweep in one process (--max-trials 0 creates and enqueues it), then launch the "
                       "workers under torchrun with --worker")
    if args.tune_lr:
        raise BadInput("--tune-lr runs in single-process workers; tune first, then launch distributed workers")


def run_job(work: Callable[[TrainCell], int], train: TrainCell) -> int:
    """Rank 0 runs ``work(trainer)`` (the worker loop) with a trainer that first sends each cell to the other
    ranks; the other ranks train whatever rank 0 sends until it sends None. Returns how many trials this ran."""
    from transfer_laws.lightning_modules.distributed import end_process_groups

    finished = False
    try:
        ran = _lead_or_follow(work, train, _cell_group())
        finished = True
        return ran
    finally:
        end_process_groups(barrier=finished)  # after the last message, or at once on a failure


def _lead_or_follow(work: Callable[[TrainCell], int], train: TrainCell, group: ProcessGroup) -> int:
    import torch.distributed as dist

    if dist.get_rank() != 0:
        ran = 0
        while (message := _receive(group)) is not None:
            cell, number, tags = message
            train(cell, number, tags=tags)
            ran += 1
        return ran

    def lead(cell: Cell, number: int, tags: dict[str, str] | None = None) -> tuple[str, float]:
        _send(group, (cell, number, tags))
        try:
            return train(cell, number, tags=tags)
        except Exception as exc:  # the other ranks stopped with it or hang: end the job, the trial is retried
            warn(f"sweep: trial {number} {cell} failed in this distributed job: {exc}")
            raise SystemExit(1) from exc

    ran = work(lead)
    _send(group, None)  # not after a failure: the other ranks may be inside a training step, never to return
    return ran


def rank() -> int:
    """This process's rank in the job (0 for a plain process)."""
    return int(os.environ.get("RANK", 0))


def _cell_group() -> ProcessGroup:
    """A gloo group for the cells (Python objects, on the CPU), beside the job's default group (NCCL on GPUs)."""
    import torch
    import torch.distributed as dist

    from transfer_laws.lightning_modules.distributed import before_process_group

    if not dist.is_initialized():  # Lightning's DDP then uses this group instead of making one
        before_process_group()
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    return dist.new_group(backend="gloo")


def _send(group: ProcessGroup, message: Message) -> None:
    import torch.distributed as dist

    dist.broadcast_object_list([message], src=0, group=group)


def _receive(group: ProcessGroup) -> Message:
    import torch.distributed as dist

    box: list[Message] = [None]
    dist.broadcast_object_list(box, src=0, group=group)
    return box[0]
