"""TransferLM and build_trainer: real short fits on real text (stdlib source bytes as token ids)."""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from _plugin_data import CONFIG, CONTEXT, PoisonAtStep13, windows
from torch.utils.data import DataLoader

from transfer_laws.lightning_modules import (
    CheckpointError,
    GPTConfig,
    OptimConfig,
    TrainConfig,
    TrainingDiverged,
    TransferLM,
    build_trainer,
    load_checkpoint,
    lr_factor,
    resolve_precision,
    save_checkpoint,
)


@pytest.fixture(scope="module")
def loaders() -> tuple[DataLoader, DataLoader]:
    import json as json_module
    import textwrap

    train_text = inspect.getsource(textwrap)[:6_000]  # small: a few epochs overfit it
    test_text = inspect.getsource(json_module.decoder)[:4_000]
    return windows(train_text, 8, shuffle=True), windows(test_text, 16, shuffle=False)


class _History(L.Callback):
    def __init__(self) -> None:
        self.test_losses: list[float] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.test_losses.append(float(trainer.callback_metrics["test_loss"]))


def test_schedule_values() -> None:
    optim = OptimConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, optim, 110) == pytest.approx(0.1)
    assert lr_factor(4, optim, 110) == pytest.approx(0.5)
    assert lr_factor(9, optim, 110) == pytest.approx(1.0)
    assert lr_factor(10, optim, 110) == pytest.approx(1.0)
    assert lr_factor(60, optim, 110) == pytest.approx(0.55)  # cosine midpoint: halfway between 1 and 0.1
    assert lr_factor(110, optim, 110) == pytest.approx(0.1)
    assert lr_factor(500, optim, 110) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="lr"):
        OptimConfig(lr=0)
    with pytest.raises(ValueError, match="eval_every_steps"):
        TrainConfig(eval_every_steps=0)


def test_fit_lowers_test_loss_and_restores_best(
    loaders: tuple[DataLoader, DataLoader], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    train, test = loaders
    torch.manual_seed(0)
    module = TransferLM(CONFIG, OptimConfig(lr=1e-2, warmup_steps=5, weight_decay=0.0))
    initial = module.evaluate(test)
    history = _History()
    trainer = build_trainer(TrainConfig(max_steps=400, max_epochs=200, eval_every_steps=10, patience=4),
                            callbacks=[history], enable_progress_bar=False)
    assert resolve_precision("auto") == "32-true" and trainer.precision == "32-true"
    trainer.fit(module, train_dataloaders=train, val_dataloaders=test)

    assert module.best_test_loss < initial - 0.5  # learned real structure of Python source
    assert module.best_test_loss == pytest.approx(min(history.test_losses))
    assert module.best_step > 0 and module.best_step % 10 == 0
    # The text is small: the model overfits, test loss rises, early stopping ends the run before max_steps,
    # and the weights are the best ones, not the last.
    assert trainer.global_step < 400
    assert history.test_losses[-1] > module.best_test_loss
    assert module.evaluate(test) == pytest.approx(module.best_test_loss, rel=1e-6)
    assert list(tmp_path.iterdir()) == []  # no logger, no checkpoint files


def test_tokens_seen_and_final_evaluation(loaders: tuple[DataLoader, DataLoader]) -> None:
    train, test = loaders
    module = TransferLM(CONFIG, OptimConfig(lr=1e-3))
    history = _History()
    # 7 steps with evaluation every 5: the last two steps get the final evaluation at the end of fit.
    reader = _ReadAtEnd()
    trainer = build_trainer(TrainConfig(max_steps=7, eval_every_steps=5, patience=10),
                            callbacks=[history, reader], enable_progress_bar=False)
    trainer.fit(module, train_dataloaders=train, val_dataloaders=test)
    assert module.tokens_seen == 7 * 8 * CONTEXT
    assert len(history.test_losses) == 1  # the in-loop one at step 5
    assert module._last_eval_step == 7  # the final evaluation ran
    assert module.evaluate(test) == pytest.approx(module.best_test_loss, rel=1e-6)
    # A user callback (the MLflow facts callback) reading the result at on_train_end sees the final values.
    assert reader.seen == (module.best_test_loss, module.best_step)


class _ReadAtEnd(L.Callback):
    def __init__(self) -> None:
        self.seen: tuple[float, int] | None = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seen = (pl_module.best_test_loss, pl_module.best_step)


def test_gradient_accumulation_counts_optimizer_steps(loaders: tuple[DataLoader, DataLoader]) -> None:
    train, test = loaders
    module = TransferLM(CONFIG, OptimConfig(lr=1e-3))
    history = _History()
    trainer = build_trainer(TrainConfig(max_steps=6, eval_every_steps=3, patience=10, accumulate_grad_batches=2),
                            callbacks=[history], enable_progress_bar=False)
    trainer.fit(module, train_dataloaders=train, val_dataloaders=test)
    assert trainer.global_step == 6
    assert module.tokens_seen == 12 * 8 * CONTEXT  # two micro-batches per optimizer step
    assert len(history.test_losses) == 2  # after optimizer steps 3 and 6


def test_nan_loss_raises_and_keeps_initial_weights(loaders: tuple[DataLoader, DataLoader]) -> None:
    train, test = loaders
    module = TransferLM(CONFIG, OptimConfig(lr=1e6, warmup_steps=0, grad_clip=0.0))
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    trainer = build_trainer(TrainConfig(max_steps=50, eval_every_steps=20), enable_progress_bar=False)
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf) at step \d+") as info:
        trainer.fit(module, train_dataloaders=train, val_dataloaders=test)
    assert 0 < info.value.step < 20
    after = module.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the last good weights: nothing evaluated yet


def test_poisoned_weights_raise_and_keep_best(loaders: tuple[DataLoader, DataLoader]) -> None:
    train, test = loaders
    module = TransferLM(CONFIG, OptimConfig(lr=3e-3))
    trainer = build_trainer(TrainConfig(max_steps=50, eval_every_steps=10, patience=10), callbacks=[PoisonAtStep13()],
                            enable_progress_bar=False)
    with pytest.raises(TrainingDiverged, match="loss became nan at step 13"):
        trainer.fit(module, train_dataloaders=train, val_dataloaders=test)
    assert module.best_step == 10
    assert all(torch.isfinite(p).all() for p in module.model.parameters())
    assert module.evaluate(test) == pytest.approx(module.best_test_loss, rel=1e-6)


@pytest.mark.parametrize(("every", "stopped_at"), [(5, 14), (50, 20)])
def test_sparse_finite_checks_name_the_first_bad_step(loaders: tuple[DataLoader, DataLoader], every: int,
                                                      stopped_at: int) -> None:
    # As on a GPU: the loss is read on the host every `every` steps (after step 14 here), and always before an
    # evaluation (at step 20), so the report names step 13 rather than the evaluation's non-finite test loss.
    train, test = loaders
    module = TransferLM(CONFIG, OptimConfig(lr=3e-3), finite_check_every=every)
    trainer = build_trainer(TrainConfig(max_steps=50, eval_every_steps=10, patience=10), callbacks=[PoisonAtStep13()],
                            enable_progress_bar=False)
    with pytest.raises(TrainingDiverged, match="^loss became nan at step 13$") as info:
        trainer.fit(module, train_dataloaders=train, val_dataloaders=test)
    assert (info.value.step, trainer.global_step) == (13, stopped_at)
    assert module.best_step == 10
    assert all(torch.isfinite(p).all() for p in module.model.parameters())
    with pytest.raises(ValueError, match="finite_check_every"):
        TransferLM(CONFIG, finite_check_every=0)


class _PoisonBeforeEval(L.Callback):
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == 20:
            with torch.no_grad():
                pl_module.model.ln_f.weight[0] = math.inf


def test_non_finite_test_loss_raises_and_keeps_best(loaders: tuple[DataLoader, DataLoader]) -> None:
    train, test = loaders
    module = TransferLM(CONFIG, OptimConfig(lr=3e-3))
    trainer = build_trainer(TrainConfig(max_steps=50, eval_every_steps=10, patience=10),
                            callbacks=[_PoisonBeforeEval()], enable_progress_bar=False)
    with pytest.raises(TrainingDiverged, match=r"test loss became (nan|inf) at step 20"):
        trainer.fit(module, train_dataloaders=train, val_dataloaders=test)
    assert module.best_step == 10
    assert module.evaluate(test) == pytest.approx(module.best_test_loss, rel=1e-6)


def test_init_weights_from_checkpoint(tmp_path: Path, loaders: tuple[DataLoader, DataLoader]) -> None:
    _, test = loaders
    source = TransferLM(CONFIG)
    folder = save_checkpoint(source.model, tmp_path / "ckpt", extra={"run_id": "r1"})
    started = TransferLM(CONFIG, init_weights=folder)
    assert started.evaluate(test) == source.evaluate(test)
    assert started.n_params == 12 * 32 * 32 + 13 * 32 + 64 and started.n_params_total > started.n_params
    wider = GPTConfig(vocab_size=256, context_length=CONTEXT, n_layer=1, n_head=2, n_embd=64)
    with pytest.raises(CheckpointError, match="shape"):
        TransferLM(wider, init_weights=folder)
    loaded, _ = load_checkpoint(folder)  # a fine-tune reads the files once and starts from the loaded GPT
    assert TransferLM(loaded.config, init_weights=loaded).evaluate(test) == source.evaluate(test)
    with pytest.raises(CheckpointError, match="shape"):
        TransferLM(wider, init_weights=loaded)
    assert json.loads((folder / "config.json").read_text())["extra"] == {"run_id": "r1"}


def test_mlflow_logger_gets_test_loss_per_evaluation(sqlite_uri: str, loaders: tuple[DataLoader, DataLoader]) -> None:
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow import MlflowClient

    train, test = loaders
    module = TransferLM(CONFIG, OptimConfig(lr=3e-3))
    logger = MLFlowLogger(experiment_name="t", tracking_uri=sqlite_uri)
    trainer = build_trainer(TrainConfig(max_steps=30, eval_every_steps=10, patience=10, log_every_steps=10),
                            logger=logger, enable_progress_bar=False)
    trainer.fit(module, train_dataloaders=train, val_dataloaders=test)
    client = MlflowClient(sqlite_uri)
    history = client.get_metric_history(logger.run_id, "test_loss")
    assert sorted(m.step for m in history) == [10, 20, 30]
    assert min(m.value for m in history) == pytest.approx(module.best_test_loss, rel=1e-5)
    train_steps = [m.step for m in client.get_metric_history(logger.run_id, "train_loss")]
    assert len(train_steps) == 3  # batched: one logging call per log_every_steps, not one per step
    assert client.get_metric_history(logger.run_id, "tokens_per_s")


class _FusedClipRecorder(TransferLM):
    """Forces the fused AdamW (the CUDA default; CPU supports it too) and records the norm left after clipping."""

    norms: list[float]

    def _fused_adamw(self) -> bool:
        return True

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        grads = [p.grad.norm() for p in self.parameters() if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack(grads))))


def test_fused_adamw_under_bf16_mixed_clips(loaders: tuple[DataLoader, DataLoader]) -> None:
    """Lightning refuses to clip for a fused optimizer under mixed precision; our module clips it itself."""
    train, test = loaders
    module = _FusedClipRecorder(CONFIG, OptimConfig(lr=1e-3, grad_clip=0.01))
    module.norms = []
    trainer = build_trainer(TrainConfig(max_steps=3, eval_every_steps=3, precision="bf16-mixed"),
                            enable_progress_bar=False)
    trainer.fit(module, train_dataloaders=train, val_dataloaders=test)
    assert trainer.global_step == 3
    assert isinstance(trainer.optimizers[0], torch.optim.AdamW) and trainer.optimizers[0].defaults["fused"]
    assert len(module.norms) == 3 and max(module.norms) <= 0.01 * 1.001


def test_seeded_module_ignores_earlier_randomness() -> None:
    """Runs trained one after another in one process (a sweep) start from the same weights for the same seed."""
    from transfer_laws.plugin.training import seeded_module

    first = seeded_module(CONFIG, OptimConfig(), None, seed=3).state_dict()
    torch.rand(1000)  # what an earlier run in this process would have consumed
    again = seeded_module(CONFIG, OptimConfig(), None, seed=3).state_dict()
    other = seeded_module(CONFIG, OptimConfig(), None, seed=4).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
