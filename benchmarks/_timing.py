"""Shared pieces of the training-speed benchmarks: real-text batches, a bare PyTorch loop, our full path.

Both loops train the same GPT from the same seed on the same batches and time the same window of steps after a
warm-up, so their tokens/s compare directly; one-off costs (Trainer setup, compilation, the final evaluation) are
reported apart from throughput.
"""

from __future__ import annotations

import math
import sysconfig
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

Batch = tuple[torch.Tensor, torch.Tensor]


def stdlib_batches(n: int, batch: int, context: int) -> list[Batch]:
    """``n`` next-token batches of real text: the interpreter's standard-library sources as byte ids (< 256)."""
    need = n * batch * context + 1
    chunks: list[bytes] = []
    total = 0
    while total < need:  # repeat the sources if a large run asks for more than they hold
        for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
            chunks.append(path.read_bytes())
            total += len(chunks[-1])
            if total >= need:
                break
    ids = torch.frombuffer(bytearray(b"".join(chunks)), dtype=torch.uint8).long()
    span = batch * context
    return [(ids[i * span : (i + 1) * span].view(batch, context), ids[i * span + 1 : (i + 1) * span + 1].view(
        batch, context)) for i in range(n)]


def bare_loop(config: Any, optim: Any, batches: list[Batch], warmup: int, seed: int, *, device: str = "cpu",
              bf16: bool = False, compile: bool = False, check_every: int = 1) -> float:
    """Tokens/s of a plain PyTorch loop over ``batches[warmup:]``.

    AdamW (fused on CUDA), warmup + cosine, norm clipping as in our module; the loss is read every ``check_every``
    steps (1 on CPU, where it is free; nanoGPT-style sparse reads on GPU, to expose the cost of our per-step check).
    """
    from transfer_laws.lightning_modules import GPT, lr_factor

    torch.manual_seed(seed)
    model = GPT(config).to(device).train()
    if compile:
        model.compile()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": optim.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=optim.lr, betas=optim.betas,
                            fused=device.startswith("cuda"))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, optim, len(batches)))
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if bf16 else nullcontext()
    start = 0.0
    for i, (x, y) in enumerate(batches):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast:
            _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        if (i + 1) % check_every == 0 and not math.isfinite(loss.item()):
            raise RuntimeError("bare loop diverged")
    _sync(device)
    return sum(x.numel() for x, _ in batches[warmup:]) / (time.perf_counter() - start)


def full_path(config: Any, optim: Any, train: Any, batches: list[Batch], val: list[Batch], warmup: int, seed: int,
              logger: Any = None) -> tuple[float, float, Any]:
    """(tokens/s over ``batches[warmup:]``, one-off seconds of fit outside that window, the module) of our path."""
    import lightning as L
    from torch.utils.data import DataLoader

    from transfer_laws.lightning_modules import TransferLM, build_trainer

    class Window(L.Callback):
        def __init__(self) -> None:
            self.start = self.end = 0.0

        def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object,
                                 batch_idx: int) -> None:
            if batch_idx == warmup:
                _sync(str(pl_module.device))
                self.start = time.perf_counter()

        def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: object,
                               batch: object, batch_idx: int) -> None:
            if batch_idx == len(batches) - 1:
                _sync(str(pl_module.device))
                self.end = time.perf_counter()

    torch.manual_seed(seed)
    module = TransferLM(config, optim)
    window = Window()
    trainer = build_trainer(train, callbacks=[window], logger=logger, enable_progress_bar=False)
    began = time.perf_counter()
    # batch_size=None: the DataLoader hands over the prepared batches unchanged, in order.
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None),
                val_dataloaders=DataLoader(val, batch_size=None))
    total = time.perf_counter() - began
    timed = window.end - window.start
    return sum(x.numel() for x, _ in batches[warmup:]) / timed, total - timed, module


def quiet() -> None:
    """Keep the benchmark's table readable: no Lightning/MLflow info lines or warnings."""
    import logging
    import warnings

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "mlflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
