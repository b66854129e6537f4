"""Trainer construction: the same settings on a 2-core CPU and on many GPUs.

Held-out evaluation every ``eval_every_steps`` optimizer steps (counted across epochs, so small D_F trains for many
epochs), early stopping on ``test_loss``, bf16-mixed on CUDA, DDP through Lightning when there are several devices.
Under ``torchrun`` or ``srun``, ``devices: auto`` takes the launcher's processes per node and node count (see
``distributed.launcher_devices``), so the same command line runs under Lightning's own launcher and theirs.

MLflow traffic: Lightning hands the logger all metrics of a step together, every ``log_every_steps`` steps, and
``MLFlowLogger.log_metrics`` sends them as one ``log_batch`` request, so a run makes one request per
``log_every_steps`` optimizer steps (plus one per evaluation), never one per metric per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, cast

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from lightning.pytorch.loggers import Logger

from transfer_laws.lightning_modules.config import TrainConfig
from transfer_laws.lightning_modules.distributed import launcher_devices
from transfer_laws.lightning_modules.progress import progress_callbacks, quiet_lightning_tips
from transfer_laws.registry.schema import METRIC_TEST_LOSS

if TYPE_CHECKING:
    from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT

__all__ = ["TrainConfig", "build_trainer", "resolve_devices", "resolve_precision"]  # TrainConfig: its old import path


def resolve_precision(precision: str) -> _PRECISION_INPUT:
    """``auto`` -> bf16-mixed on CUDA with bf16, 16-mixed on older CUDA cards, 32-true on CPU."""
    if precision != "auto":
        return cast("_PRECISION_INPUT", precision)  # as configured: the Trainer refuses a value it does not know
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def resolve_devices(train: TrainConfig) -> tuple[int | str, int]:
    """(devices, num_nodes) for Lightning: a launcher's layout when ``devices`` is auto, else as given.

    FSDP is refused on CPU here, before any run exists: Lightning 2.6's FSDPStrategy requires a CUDA accelerator
    (``AcceleratorConnector._check_strategy_and_fallback``).
    """
    if train.strategy.startswith("fsdp") and not torch.cuda.is_available():
        raise ValueError(f"--train.strategy {train.strategy} needs CUDA GPUs (Lightning's FSDP does not run on the "
                         "CPU); use --train.strategy ddp here")
    launched = launcher_devices()
    if train.devices == "auto" and launched is not None:
        return launched
    return train.devices, train.num_nodes


class _FinishFit(Callback):
    """Final evaluation and best-weight restore, before any other callback's on_train_end reads the result."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        finish = getattr(pl_module, "finish_fit", None)
        if finish is not None:
            finish()


class _Compile(Callback):
    """Compile the GPT in place (``nn.Module.compile`` keeps state_dict keys, so checkpoints stay portable)."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            model = pl_module.model
            if not isinstance(model, torch.nn.Module):
                raise TypeError(f"compile needs a LightningModule whose .model is a torch Module, got {type(model)}")
            model.compile()


def build_trainer(
    train: TrainConfig,
    *,
    callbacks: Sequence[Callback] = (),
    logger: Logger | None = None,
    enable_progress_bar: bool = True,
) -> L.Trainer:
    """A Trainer for TransferLM; ``logger`` is passed through (None: no logger, no files).

    ``enable_progress_bar``: Lightning's bar when stderr is a terminal, else a progress line every few seconds.
    """
    L.seed_everything(train.seed, workers=True, verbose=False)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # TF32 for any fp32 matmul left outside autocast
    quiet_lightning_tips()
    bar, progress = progress_callbacks(enable_progress_bar)
    own: list[Callback] = [_FinishFit(), EarlyStopping(monitor=METRIC_TEST_LOSS, mode="min", patience=train.patience),
                           *progress]
    if train.compile:
        own.append(_Compile())
    devices, num_nodes = resolve_devices(train)
    return L.Trainer(
        max_steps=train.max_steps,
        max_epochs=train.max_epochs,
        max_time=None if train.max_time_s is None else timedelta(seconds=train.max_time_s),
        # In batches; counted across epochs because check_val_every_n_epoch is None.
        val_check_interval=train.eval_every_steps * train.accumulate_grad_batches,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        precision=resolve_precision(train.precision),
        accelerator="auto",
        devices=devices,
        num_nodes=num_nodes,
        strategy=train.strategy,
        accumulate_grad_batches=train.accumulate_grad_batches,
        log_every_n_steps=train.log_every_steps,
        logger=logger if logger is not None else False,
        callbacks=[*own, *callbacks],
        # The best weights are kept in memory by the module and saved by the recipe; Lightning writes no files.
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=bar,
    )
