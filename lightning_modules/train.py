"""Trainer construction: the same settings on a 2-core CPU and on many GPUs.

Held-out evaluation every ``eval_every_steps`` optimizer steps (counted across epochs, so small D_F trains for many
epochs), early stopping on ``test_loss``, bf16-mixed on CUDA, DDP through Lightning when there are several devices.
Under ``torchrun`` or ``srun``, ``devices: auto`` takes the launcher's processes per node and node count (see
``distributed.launcher_devices``), so the same command line runs under Lightning's own launcher and theirs.

MLflow traffic: Lightning hands the logger all metrics of a step together, every ``log_every_steps`` steps, and
``MLFlowLogger.log_metrics`` sends them as one ``log_batch`` request, so a run makes one request per
``log_every_steps`` optimizer steps (plus one per evaluation), never one per metric per step.

Progress while a run trains: Lightning's bar on a terminal, one plain line per interval anywhere else. Both show the
optimizer step, training throughput (tokens/s) and the last held-out loss, so a two-minute pretraining is never
silent and a log file (CI, a sweep worker, ``nohup``) gets readable lines, not bar redraws.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import IO, TYPE_CHECKING, cast

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from lightning.pytorch.loggers import Logger

from transfer_laws.lightning_modules.config import TrainConfig
from transfer_laws.lightning_modules.distributed import launcher_devices
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


LINE_EVERY_S = 15.0
"""Seconds between progress lines when stderr is not a terminal."""


class LineProgress(Callback):
    """One line per ``every_s`` seconds (and one at the end) on ``stream``: step, epoch, tokens/s, held-out loss."""

    def __init__(self, every_s: float = LINE_EVERY_S, stream: IO[str] | None = None, label: str = "train") -> None:
        self.every_s, self.stream, self.label = every_s, stream, label
        self._start = self._last = 0.0
        self._tokens_at_last = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._last = time.monotonic()
        self._tokens_at_last = int(getattr(pl_module, "tokens_seen", 0))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: object) -> None:
        if time.monotonic() - self._last >= self.every_s:
            self._emit(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._emit(trainer, pl_module, final=True)

    def _emit(self, trainer: L.Trainer, pl_module: L.LightningModule, final: bool = False) -> None:
        if not trainer.is_global_zero:
            return
        now = time.monotonic()
        tokens = int(getattr(pl_module, "tokens_seen", 0))
        span = now - (self._start if final else self._last)
        done = tokens - (0 if final else self._tokens_at_last)
        rate = done / span if span > 0 else math.nan
        self._last, self._tokens_at_last = now, tokens
        print(progress_line(self.label, trainer, pl_module, rate, now - self._start, final),
              file=self.stream or sys.stderr, flush=True)


def progress_line(label: str, trainer: L.Trainer, pl_module: L.LightningModule, tokens_per_s: float,
                  elapsed_s: float, final: bool = False) -> str:
    """``[train] step 120/1000 epoch 3 | 2,340 tok/s | test_loss 4.123 (best 4.100) | 35 s``."""
    last = trainer.callback_metrics.get(METRIC_TEST_LOSS)
    best = getattr(pl_module, "best_test_loss", math.inf)
    held_out = "test_loss -" if last is None else f"test_loss {float(last):.4f}"
    if math.isfinite(best):
        held_out += f" (best {best:.4f})"
    rate = "- tok/s" if not math.isfinite(tokens_per_s) else f"{tokens_per_s:,.0f} tok/s"
    what = "done:" if final else ""
    limit = f"/{trainer.max_steps}" if trainer.max_steps and trainer.max_steps > 0 else ""
    return (f"[{label}] {what}{' ' if what else ''}step {trainer.global_step}{limit} epoch {trainer.current_epoch} | "
            f"{rate}{' (mean)' if final else ''} | {held_out} | {elapsed_s:.0f} s")


def progress_callbacks(enabled: bool, stream: IO[str] | None = None) -> tuple[bool, list[Callback]]:
    """(Lightning's bar on?, extra callbacks): the bar on a terminal, ``LineProgress`` elsewhere, nothing when off."""
    if not enabled:
        return False, []
    out = stream or sys.stderr
    if out.isatty():
        return True, []
    return False, [LineProgress(stream=stream)]


class _DropTips(logging.Filter):
    """Lightning's advertising ("💡 Tip: ... litlogger / litmodels") is not a message about this run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in str(record.msg)


def quiet_lightning_tips() -> None:
    """Drop Lightning's tips at their logger (idempotent)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        target = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in target.filters):
            target.addFilter(_DropTips())


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
