"""The one LightningModule behind pretraining, fine-tuning and from-scratch runs.

It trains a GPT with AdamW (no decay on biases and LayerNorms), linear warmup then cosine decay, gradient clipping;
evaluates the exact token-weighted held-out loss over the whole test set on the Trainer's schedule; keeps the best
weights and puts them back at the end of fit (early stopping restores and reports the best, as in the paper); and
stops a run whose loss stops being finite with TrainingDiverged, leaving the last good weights in the model.

Reading a loss on the host waits for the GPU to finish the step, which leaves it idle while Python prepares the
next one. So the module keeps, on the loss's device, the first step whose loss was not finite and that loss, and
reads them only every ``finite_check_every`` steps (every step on CPU, where reading is free; every logging
interval on accelerators, when the logged loss is read anyway), before each evaluation and at the end of fit.
A diverged run then stops up to that many steps later, and the report still names the exact step.

Under DDP or FSDP every evaluation reads this rank's share of the test set (``distributed.ShardSampler``: each
window on exactly one rank, padding windows count nothing) and sums the loss and the target count over ranks
before dividing, so the held-out loss is the same token-weighted mean as on one process, not a mean of means.
``tokens_seen`` counts the windows of all ranks from the sampler's layout, with no communication.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from contextlib import nullcontext
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig

from transfer_laws.lightning_modules.config import CheckpointError, GPTConfig, OptimConfig
from transfer_laws.lightning_modules.distributed import ShardSampler, fsdp_root, whole_parameters
from transfer_laws.lightning_modules.flops import mfu, peak_flops
from transfer_laws.lightning_modules.model import GPT, load_checkpoint, non_embedding_params, total_params
from transfer_laws.registry.schema import METRIC_TEST_LOSS, METRIC_TRAIN_LOSS

__all__ = ["OptimConfig", "TrainingDiverged", "TransferLM", "lr_factor"]  # OptimConfig: its old import path

METRIC_TOKENS_PER_S = "tokens_per_s"
METRIC_MFU = "mfu"


class TrainingDiverged(RuntimeError):
    """The loss became non-finite; the model holds the last good weights (best evaluated, else the initial ones)."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


def lr_factor(step: int, optim: OptimConfig, total_steps: int) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based): linear warmup, then cosine to min_lr_ratio."""
    if step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    span = max(1, total_steps - optim.warmup_steps)
    progress = min(1.0, (step - optim.warmup_steps) / span)
    return optim.min_lr_ratio + (1.0 - optim.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class TransferLM(L.LightningModule):
    """A GPT trained on next-token prediction; pretrain, finetune and scratch runs differ only in init_weights.

    Attributes read by callbacks and scripts: ``model`` (the GPT), ``n_params`` (non-embedding N, see
    ``non_embedding_params``), ``n_params_total``, ``best_test_loss`` (nats/token, inf before the first evaluation),
    ``best_step`` (optimizer step of that evaluation, -1 before), ``tokens_seen`` (training tokens over all ranks).
    """

    def __init__(self, model_config: GPTConfig, optim: OptimConfig | None = None,
                 init_weights: Path | GPT | None = None, finite_check_every: int | None = None) -> None:
        """``init_weights``: a checkpoint folder, or a GPT already loaded from one (a fine-tune loads its
        checkpoint once); ``finite_check_every``: optimizer steps between host reads of the non-finite-loss record
        (see the module docstring); None: 1 on CPU, the Trainer's ``log_every_n_steps`` on accelerators."""
        super().__init__()
        if finite_check_every is not None and finite_check_every < 1:
            raise ValueError(f"finite_check_every must be >= 1 or None, got {finite_check_every!r}")
        self.finite_check_every = finite_check_every
        self.model_config = model_config
        self.optim = optim or OptimConfig()
        self.model = GPT(model_config) if init_weights is None else _load_matching(init_weights, model_config)
        self.n_params = non_embedding_params(self.model)
        self.n_params_total = total_params(self.model)
        self.best_test_loss = math.inf
        self.best_step = -1
        self.tokens_seen = 0
        self._best_state: dict[str, torch.Tensor] | None = None
        self._initial_state: dict[str, torch.Tensor] | None = None
        self._last_eval_step = -1
        self._finished = False
        self._val_sum: torch.Tensor | None = None
        self._val_count: torch.Tensor | None = None
        self._window_start = time.perf_counter()
        self._window_tokens = 0
        self._peak: float | None = None
        self._first_bad_step: torch.Tensor | None = None  # on the loss's device; -1 while every loss was finite
        self._first_bad_value: torch.Tensor | None = None

    # -- training -----------------------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        self._finished = False
        self._first_bad_step = self._first_bad_value = None
        self._initial_state = self._whole_snapshot()
        self._peak = peak_flops(self.device)
        self._reset_window()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        sampler = self._shard_sampler()
        if sampler is None:
            _, loss = self.model(x, y)
            tokens = x.numel() * self.trainer.world_size
        else:  # a rank's last batch may hold only padding windows: their loss is 0, not 0/0
            total, count = self._loss_sum(batch, dtype=torch.float32)
            loss = total / count.clamp(min=1)
            tokens = sampler.windows_in_batch(batch_idx) * x.size(1)
        self._track_finite(loss.detach())
        self.tokens_seen += tokens
        self._window_tokens += tokens
        last_micro_batch = (batch_idx + 1) % self.trainer.accumulate_grad_batches == 0
        if last_micro_batch and (self.global_step + 1) % self._finite_every() == 0:
            self._read_finite()
        # Log only on the steps Lightning sends to the logger: self.log costs ~0.1-0.5 ms, which a 1e5-parameter
        # model on a CPU notices, and on_step values logged between flushes are dropped anyway.
        if last_micro_batch and self.trainer._logger_connector.should_update_logs:  # its flush rule
            self.log(METRIC_TRAIN_LOSS, loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
            self._log_throughput()
        return loss

    def _shard_sampler(self) -> ShardSampler | None:
        """The training loader's ShardSampler (data.py uses one under DDP/FSDP), None otherwise."""
        loader = getattr(self._trainer, "train_dataloader", None) if self._trainer is not None else None
        sampler = getattr(loader, "sampler", None)
        return sampler if isinstance(sampler, ShardSampler) else None

    def _finite_every(self) -> int:
        if self.finite_check_every is not None:
            return self.finite_check_every
        # Trainer sets log_every_n_steps in its logger connector, so Lightning's class does not declare it
        every = self.trainer.log_every_n_steps  # type: ignore[attr-defined]
        return 1 if self.device.type == "cpu" else max(1, int(every))

    def _track_finite(self, loss: torch.Tensor) -> None:
        """Record the first non-finite loss and its step on the loss's device (no host sync); when every step is
        read anyway (one CPU process), read the loss at once instead."""
        if self._finite_every() == 1 and self.trainer.world_size == 1:  # read at once: cheaper than recording
            value = float(loss)
            if not math.isfinite(value):
                self._diverge("loss", value)
            return
        bad_step, bad_value = self._first_bad_step, self._first_bad_value  # set together
        if bad_step is None or bad_value is None or bad_step.device != loss.device:
            bad_step = torch.full((), -1, dtype=torch.long, device=loss.device)
            bad_value = torch.zeros((), dtype=torch.float32, device=loss.device)
        first = (~torch.isfinite(loss)) & (bad_step < 0)
        self._first_bad_step = torch.where(first, int(self.global_step), bad_step)
        self._first_bad_value = torch.where(first, loss.float(), bad_value)

    def _read_finite(self) -> None:
        """Stop with TrainingDiverged if any recorded loss was not finite; under DDP every rank must agree."""
        if self._first_bad_step is None or self._first_bad_value is None:  # set together: nothing recorded yet
            return
        bad = (self._first_bad_step >= 0).float()
        if self.trainer.world_size > 1:  # a collective at the same steps on every rank, else healthy ranks hang
            bad = self.trainer.strategy.reduce(bad, reduce_op="sum")
        if float(bad) > 0:
            step = int(self._first_bad_step)
            if step < 0:
                self._diverge("loss on another rank", math.nan)
            self._diverge("loss", float(self._first_bad_value), step)

    def _diverge(self, what: str, value: float, step: int | None = None) -> None:
        self._restore(self._best_state if self._best_state is not None else self._initial_state)
        step = int(self.global_step) if step is None else step
        raise TrainingDiverged(f"{what} became {value} at step {step}", step)

    def _log_throughput(self) -> None:
        elapsed = time.perf_counter() - self._window_start
        if elapsed <= 0:
            return
        per_device = self._window_tokens / self.trainer.world_size / elapsed
        self.log(METRIC_TOKENS_PER_S, per_device * self.trainer.world_size, on_step=True, on_epoch=False,
                 prog_bar=True)
        util = mfu(per_device, self.model_config, self._peak)
        if util is not None:
            self.log(METRIC_MFU, util, on_step=True, on_epoch=False)
        self._reset_window()

    def _reset_window(self) -> None:
        self._window_start = time.perf_counter()
        self._window_tokens = 0

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": self.optim.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW(groups, lr=self.optim.lr, betas=self.optim.betas, fused=self._fused_adamw())
        total = self._scheduled_steps()
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, self.optim, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _scheduled_steps(self) -> int:
        estimated = self.trainer.estimated_stepping_batches  # min(max_steps, epochs x batches / accumulation)
        if math.isfinite(estimated) and estimated > 0:
            return int(estimated)
        return max(self.trainer.max_steps, self.optim.warmup_steps + 1)

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        # A Trainer-level setting wins; otherwise clip by our OptimConfig.
        clip = gradient_clip_val if gradient_clip_val is not None else self.optim.grad_clip
        if clip:
            root = self._fsdp()
            if root is not None:  # each rank holds a shard of the gradients: FSDP computes the global norm
                from torch.distributed.fsdp import FullyShardedDataParallel

                if not isinstance(root, FullyShardedDataParallel):
                    raise TypeError(f"the FSDP strategy's model is not FSDP-wrapped: {type(root).__name__}")
                root.clip_grad_norm_(clip)
                return
            # Clip directly: Lightning's clip_gradients refuses fused optimizers under mixed precision, although
            # bf16 has no loss scale, and fp16's scaler has unscaled the gradients before this hook runs.
            torch.nn.utils.clip_grad_norm_(self.parameters(), clip)

    def _fsdp(self) -> torch.nn.Module | None:
        """The FSDP-wrapped model under the FSDP strategy, else None (a cheap check: it runs every step)."""
        trainer = self._trainer
        return fsdp_root(trainer.strategy.model) if trainer is not None and self._under_fsdp() else None

    def _under_fsdp(self) -> bool:
        return self._trainer is not None and type(self._trainer.strategy).__name__.startswith("FSDP")

    def _fused_adamw(self) -> bool:
        """One kernel for all parameters on CUDA; not under fp16, whose fused step would unscale after clipping."""
        precision = str(self.trainer.precision) if self._trainer is not None else ""
        return self.device.type == "cuda" and not precision.startswith("16")

    # -- held-out evaluation ------------------------------------------------------------------------------------
    def on_validation_start(self) -> None:
        if not self.trainer.sanity_checking:
            self._read_finite()  # a diverged model's test loss would hide the training step that diverged

    def on_validation_epoch_start(self) -> None:
        self._val_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self._val_count = torch.zeros((), dtype=torch.float64, device=self.device)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        if self._val_sum is None or self._val_count is None:
            raise RuntimeError("validation_step ran before on_validation_epoch_start set up the sums")
        total, count = self._loss_sum(batch)
        self._val_sum += total
        self._val_count += count

    def _loss_sum(self, batch: tuple[torch.Tensor, torch.Tensor],
                  dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        logits, _ = self.model(x)
        total = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1), reduction="sum",
                                ignore_index=-100)
        return total.to(dtype), (y != -100).sum().to(dtype)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or self._val_sum is None or self._val_count is None:  # set together
            return
        sums = torch.stack([self._val_sum, self._val_count])
        if self.trainer.world_size > 1:
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        if float(sums[1]) == 0:
            raise ValueError("the held-out test set is empty")
        loss = sums[0] / sums[1]
        # Logged to callbacks (early stopping) here, to the loggers by _log_test_loss at the optimizer step count.
        # sync_dist: the value is already the same on every rank (so the mean is exact); Lightning warns without it.
        self.log(METRIC_TEST_LOSS, loss.float(), on_step=False, on_epoch=True, sync_dist=self.trainer.world_size > 1,
                 logger=False, prog_bar=True)
        self._log_test_loss(float(loss))
        self._record_eval(float(loss))

    def _log_test_loss(self, loss: float) -> None:
        if self.trainer.is_global_zero:
            for logger in self.trainer.loggers:
                logger.log_metrics({METRIC_TEST_LOSS: loss}, step=int(self.global_step))

    def on_validation_end(self) -> None:
        self._reset_window()  # evaluation time is not training throughput

    def _record_eval(self, loss: float) -> None:
        if not math.isfinite(loss):
            self._diverge("test loss", loss)  # already the same on every rank
        self._last_eval_step = int(self.global_step)
        if loss < self.best_test_loss:
            self.best_test_loss = loss
            self.best_step = int(self.global_step)
            self._best_state = self._whole_snapshot()

    @torch.no_grad()
    def evaluate(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
        """Exact token-weighted mean cross-entropy (nats/token) of the model over ``batches``, outside any loop."""
        total, count = self._evaluate_sums(batches)
        if count == 0:
            raise ValueError("the held-out test set is empty")
        return float(total / count)

    def _evaluate_sums(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed loss, targets) over ``batches`` on this process, in float64 on the CPU."""
        was_training = self.model.training
        self.model.eval()
        total = torch.zeros((), dtype=torch.float64)
        count = torch.zeros((), dtype=torch.float64)
        context = self.trainer.precision_plugin.forward_context() if self._trainer is not None else nullcontext()
        try:
            with context:
                for x, y in batches:
                    s, c = self._loss_sum((x.to(self.device), y.to(self.device)))
                    total += s.cpu()
                    count += c.cpu()
        finally:
            self.model.train(was_training)
        return total, count

    # -- end of fit ---------------------------------------------------------------------------------------------
    def finish_fit(self) -> None:
        """Evaluate the final weights if the last steps were not evaluated, then restore the best weights.

        Idempotent; called by build_trainer's callback before any user callback's ``on_train_end`` (so a callback
        reading ``best_test_loss`` sees the final value) and again by this module's own ``on_train_end``.
        """
        if self._finished:
            return
        self._finished = True
        self._read_finite()
        if self.global_step > 0 and self._last_eval_step != self.global_step:
            batches = self._val_batches()
            if batches is not None:
                loss = self._evaluate_everywhere(batches)
                self._log_test_loss(loss)
                self._record_eval(loss)
        if self._best_state is not None:
            self._restore(self._best_state)

    def on_train_end(self) -> None:
        self.finish_fit()

    def _evaluate_everywhere(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
        """``evaluate`` over every rank's share (each rank reads its own windows; the sums are added)."""
        if self.trainer.world_size == 1:
            return self.evaluate(batches)
        total, count = self._evaluate_sums(batches)
        sums = self.trainer.strategy.reduce(torch.stack([total, count]).to(self.device), reduce_op="sum")
        if float(sums[1]) == 0:
            raise ValueError("the held-out test set is empty")
        return float(sums[0] / sums[1])

    def _val_batches(self) -> Iterable[tuple[torch.Tensor, torch.Tensor]] | None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None:
            return datamodule.val_dataloader()
        return self.trainer.val_dataloaders

    def _restore(self, state: dict[str, torch.Tensor] | None) -> None:
        if state is not None:
            with whole_parameters(self._fsdp(), writeback=True):
                self.model.load_state_dict(state)

    def _whole_snapshot(self) -> dict[str, torch.Tensor]:
        """The whole model's weights on the CPU (under FSDP gathered from every rank: all ranks call this)."""
        with whole_parameters(self._fsdp()):
            return _snapshot(self.model)

    def whole_model(self) -> GPT:
        """The GPT to save: ``model`` itself, or under FSDP a CPU copy holding the whole best (else initial)
        weights, so the checkpoint is one consolidated file whatever the number of devices."""
        if not self._under_fsdp():  # decided by the strategy: after fit it may have unwrapped the model
            return self.model
        state = self._best_state if self._best_state is not None else self._initial_state
        if state is None:
            raise RuntimeError("no weights to save yet: under FSDP the whole model is gathered when fit starts")
        model = GPT(self.model_config)
        model.load_state_dict(state)
        return model


def _load_matching(source: Path | GPT, expected: GPTConfig) -> GPT:
    model = source if isinstance(source, GPT) else load_checkpoint(source)[0]
    got, want = model.config.to_dict(), expected.to_dict()
    got.pop("dropout"), want.pop("dropout")
    if got != want:
        where = "the loaded checkpoint" if isinstance(source, GPT) else f"checkpoint {source}"
        raise CheckpointError(f"{where} has shape {got}, but the run asks for {want}")
    fresh = GPT(expected)  # dropout is a training choice, not part of the weights
    fresh.load_state_dict(model.state_dict())
    return fresh
