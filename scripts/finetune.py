"""``transfer-laws finetune``: fine-tune a registered checkpoint on exactly D_F tokens of the target corpus.

The recipe is ``plugin.recipes.finetune``; this prints the run and what its refit did."""

from __future__ import annotations

from transfer_laws.plugin.recipes import FinetuneArgs as Args
from transfer_laws.plugin.recipes import outcome_lines, run_finetune
from transfer_laws.plugin.recipes.finetune import headline
from transfer_laws.plugin.training import TrainedRun

__all__ = ["Args", "run"]


def run(args: Args) -> TrainedRun:
    trained = run_finetune(args)
    if trained.rank == 0 and args.print_outcome:  # rank 0 of a distributed job reports
        print("\n".join(outcome_lines(trained, args.tracking_uri, headline(trained))), flush=True)
    return trained
