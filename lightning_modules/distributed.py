"""Several processes, one run: which process this is before any process group exists, and exact data shards.

A distributed job is started three ways, and each process must know its rank before training starts (only global
rank 0 creates the MLflow run and writes anything):

- ``torchrun`` (or any torchelastic launcher) sets ``RANK``, ``LOCAL_WORLD_SIZE`` and ``WORLD_SIZE``;
- SLURM's ``srun`` sets ``SLURM_PROCID``, ``SLURM_NTASKS_PER_NODE`` and ``SLURM_NNODES``;
- Lightning's own launcher (``--train.devices 2`` in one shell) re-runs the command line with ``LOCAL_RANK`` and
  ``NODE_RANK`` set; the process the user started is rank 0 of its node.

``ShardSampler`` splits the windows of an epoch between ranks so that each window is read by exactly one rank, with
no repeats: torch's ``DistributedSampler`` pads by repeating windows so every rank gets as many, which would count
some tokens twice in D_F and in the held-out loss. Here the padding is empty windows (every target ignored), placed
after the real ones, so every rank runs the same number of batches (a collective per step stays matched) and the
windows of batch ``i`` over all ranks are exactly positions ``[i*b*R, (i+1)*b*R)`` of the epoch's order.

Under FSDP a rank holds only its shard of each parameter between steps; ``whole_parameters`` gathers them for the
moments the module needs the whole model (its best-weight snapshots, restoring them), so a checkpoint is always
one consolidated file of the whole GPT, loadable on any number of devices.

Whoever creates a process group ends it (``end_process_groups``) before the process exits. Nothing else does on
CPUs: Lightning destroys the group at exit for NCCL only, and a gloo group left to interpreter exit can abort the
process (SIGABRT, "terminate called without an active exception") after everything succeeded: a gloo worker thread
that lets go of a finished collective's tensor needs the GIL to free it, and a thread that asks for the GIL while
the interpreter finalizes is ended by ``pthread_exit``, whose unwinding through a C++ destructor calls
``std::terminate``. Destroying the group joins those threads while the interpreter is whole.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch.utils.data import DistributedSampler

EMPTY_WINDOW = -1
"""Index a ShardSampler yields for padding; ``WindowDataset`` returns a window whose targets are all ignored."""


def launch_rank(env: Mapping[str, str] | None = None) -> int:
    """This process's global rank as its launcher set it (0 for a process nobody launched)."""
    env = os.environ if env is None else env
    if "RANK" in env:  # torchrun / torchelastic
        return int(env["RANK"])
    if _srun(env):
        return int(env["SLURM_PROCID"])
    local = int(env.get("LOCAL_RANK", 0))
    node = int(env.get("NODE_RANK", env.get("GROUP_RANK", 0)))
    per_node = int(env.get("LOCAL_WORLD_SIZE", 0)) or (int(env.get("WORLD_SIZE", 1)) // max(1, _nodes(env)))
    return node * per_node + local


def _srun(env: Mapping[str, str]) -> bool:
    """Started by srun, as Lightning's SLURMEnvironment sees it (an interactive allocation is no launcher)."""
    return "SLURM_PROCID" in env and "SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive")


def _nodes(env: Mapping[str, str]) -> int:
    return int(env.get("NUM_NODES", env.get("SLURM_NNODES", 1)))


def launcher_devices(env: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """(processes per node, nodes) a launcher started, or None when this process was not launched by one.

    ``--train.devices auto`` under ``torchrun --nproc-per-node 2`` then means 2, not the 1 CPU Lightning would
    pick (and refuse, since the product must match the launcher's world size).
    """
    env = os.environ if env is None else env
    if "LOCAL_WORLD_SIZE" in env and "WORLD_SIZE" in env:
        per_node = int(env["LOCAL_WORLD_SIZE"])
        return per_node, max(1, int(env["WORLD_SIZE"]) // max(1, per_node))
    if _srun(env) and "SLURM_NTASKS_PER_NODE" in env and "SLURM_NNODES" in env:
        per_node = int(env["SLURM_NTASKS_PER_NODE"].split("(")[0])  # "2(x3)" when nodes differ
        return per_node, int(env["SLURM_NNODES"])
    return None


def has_process_group() -> bool:
    """A default process group exists in this process (created by Lightning's strategy or by a sweep's job)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def before_process_group() -> None:
    """Import, while no process group exists yet, the torch module that would otherwise pin the default group.

    ``torch.distributed.nn.functional`` evaluates ``group.WORLD`` into the default arguments of its functions when it
    is first imported. Imported while a group exists (DDP imports it through ``torch._dynamo``), those defaults hold
    that group for the life of the process, so ``destroy_process_group`` cannot free it and its gloo threads live on
    to interpreter exit. Imported before, the defaults are None (the default group of the moment of the call).
    """
    if torch.distributed.is_available() and not torch.distributed.is_initialized():
        importlib.import_module("torch.distributed.nn.functional")


def end_process_groups(*, barrier: bool) -> None:
    """Destroy every process group of this process (a no-op without one), so their gloo threads are joined now.

    ``barrier``: meet the other ranks first, so no rank is still inside a collective with this one (on a job that
    went well); a failed job skips it, since the other ranks may never reach it. Call it only where no collective
    follows: after it ``process_group()`` is ``(0, 1)``.
    """
    if not has_process_group():
        return
    if barrier:
        torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def process_group() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, (0, 1) without one."""
    if has_process_group():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ShardSampler(DistributedSampler):
    """Each window on exactly one rank per epoch, no repeats; padding is ``EMPTY_WINDOW`` (see module docstring).

    ``batch_size`` is the per-rank batch, so ``windows_in_batch(i)`` can say how many real windows batch ``i``
    holds over all ranks without any communication (the trained-token count stays exact and free).
    """

    def __init__(self, n: int, num_replicas: int, rank: int, *, batch_size: int, shuffle: bool, seed: int) -> None:
        # DistributedSampler reads only len() of its dataset: a range of the window indices is enough, though torch
        # annotates it Dataset
        super().__init__(range(n), num_replicas=num_replicas, rank=rank, shuffle=shuffle,  # type: ignore[arg-type]
                         seed=seed, drop_last=False)
        self.n = n
        self.batch_size = batch_size
        self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=generator).tolist()
        else:
            order = list(range(self.n))
        order += [EMPTY_WINDOW] * (self.total_size - self.n)
        return iter(order[self.rank: self.total_size: self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples

    def windows_in_batch(self, i: int) -> int:
        """Real windows that batch ``i`` of an epoch holds over all ranks together."""
        span = self.batch_size * self.num_replicas
        return max(0, min(self.n, (i + 1) * span) - min(self.n, i * span))


def fsdp_root(module: torch.nn.Module | None) -> torch.nn.Module | None:
    """``module`` when it is (or holds) an FSDP-wrapped module, else None."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    if module is None or not any(isinstance(m, FullyShardedDataParallel) for m in module.modules()):
        return None
    return module


@contextmanager
def whole_parameters(root: torch.nn.Module | None, *, writeback: bool = False) -> Iterator[None]:
    """Every FSDP-sharded parameter under ``root`` whole on every rank while inside (a no-op for None); with
    ``writeback`` what is written into them is sharded back. A collective: every rank must enter it."""
    if root is None:
        yield
        return
    from torch.distributed.fsdp import FullyShardedDataParallel

    with FullyShardedDataParallel.summon_full_params(root, writeback=writeback, recurse=True):
        yield
