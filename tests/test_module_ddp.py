"""TransferLM under real DDP (two CPU processes, gloo): a loss that turns non-finite on one rank stops every rank."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # two processes that import Lightning and train: ~1 minute on 2 busy cores

# A script file, not `python -c`: Lightning's DDP launcher starts rank 1 by re-running the same command line.
SCRIPT = '''
import inspect, json, math, sys, textwrap
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from transfer_laws.lightning_modules import GPTConfig, OptimConfig, TrainConfig, TransferLM, build_trainer

OUT = Path(sys.argv[1])
CONTEXT = 32


class PoisonOneRank(L.Callback):
    """A NaN in rank 1's copy of a weight at step 13: only that rank's loss is non-finite at that step."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_rank == 1 and trainer.global_step == 13:
            with torch.no_grad():
                pl_module.model.blocks[0].mlp.fc.weight[0, 0] = math.nan

    def on_exception(self, trainer, pl_module, exception):
        (OUT / f"rank{trainer.global_rank}.json").write_text(json.dumps(
            {"type": type(exception).__name__, "message": str(exception), "global_step": trainer.global_step}))


def main():
    ids = torch.tensor(list(inspect.getsource(textwrap)[:8_000].encode()), dtype=torch.long)
    n = (len(ids) - 1) // CONTEXT
    data = TensorDataset(ids[: n * CONTEXT].view(n, CONTEXT), ids[1 : n * CONTEXT + 1].view(n, CONTEXT))
    config = GPTConfig(vocab_size=256, context_length=CONTEXT, n_layer=1, n_head=2, n_embd=32)
    # Reads at steps 6 and 13 (every 7): at step 13 only rank 1 has seen a non-finite loss.
    module = TransferLM(config, OptimConfig(lr=3e-3), finite_check_every=7)
    trainer = build_trainer(TrainConfig(max_steps=40, eval_every_steps=20, devices=2, strategy="ddp"),
                            callbacks=[PoisonOneRank()], enable_progress_bar=False)
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=4, shuffle=True),
                val_dataloaders=DataLoader(data, batch_size=8))


if __name__ == "__main__":
    main()
'''


def test_a_nan_on_one_rank_stops_both_ranks_at_the_same_read(tmp_path: Path) -> None:
    script = tmp_path / "ddp_nan.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    # A hang (one rank waiting in a collective the other never joins) would end in this timeout.
    proc = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode != 0
    reports = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))}
    assert set(reports) == {"rank0", "rank1"}, proc.stderr[-3000:]
    assert {r["type"] for r in reports.values()} == {"TrainingDiverged"}
    assert {r["global_step"] for r in reports.values()} == {13}
    assert reports["rank1"]["message"] == "loss became nan at step 13"
    assert reports["rank0"]["message"].startswith("loss on another rank became nan at step 13")
