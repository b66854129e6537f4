"""Progress while a run trains: Lightning's bar on a terminal, one plain line per interval anywhere else.

Both show the optimizer step, training throughput (tokens/s) and the last held-out loss, so a two-minute
pretraining is never silent and a log file (CI, a sweep worker, ``nohup``) gets readable lines, not bar redraws.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import IO

import lightning as L
from lightning.pytorch.callbacks import Callback

from transfer_laws.registry.schema import METRIC_TEST_LOSS

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
