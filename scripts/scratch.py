"""``transfer-laws scratch``: train from scratch on exactly D tokens of the target (the D_E reference curve).

The recipe is ``plugin.recipes.scratch``; this prints the run and what its refit did."""

from __future__ import annotations

from transfer_laws.plugin.recipes import ScratchArgs as Args
from transfer_laws.plugin.recipes import outcome_lines, run_scratch
from transfer_laws.plugin.recipes.scratch import headline
from transfer_laws.plugin.training import TrainedRun

__all__ = ["Args", "run"]


def run(args: Args) -> TrainedRun:
    trained = run_scratch(args)
    if trained.rank == 0 and args.print_outcome:  # rank 0 of a distributed job reports
        print("\n".join(outcome_lines(trained, args.tracking_uri, headline(trained))), flush=True)
    return trained
