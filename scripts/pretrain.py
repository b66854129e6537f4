"""``transfer-laws pretrain``: pretrain a GPT on a source corpus and register its best checkpoint.

The recipe is ``plugin.recipes.pretrain``; this prints the run and the version it registered."""

from __future__ import annotations

from transfer_laws.plugin.recipes import PretrainArgs as Args
from transfer_laws.plugin.recipes import register_pretrained, run_pretrain
from transfer_laws.plugin.recipes.pretrain import headline
from transfer_laws.plugin.training import TrainedRun
from transfer_laws.registry.checkpoints import RegisteredCheckpoint

__all__ = ["Args", "run"]


def run(args: Args) -> TrainedRun | RegisteredCheckpoint:
    trained = run_pretrain(args)
    if trained.rank != 0:  # another rank of a distributed job: rank 0 reports and registers
        return trained
    if args.print_outcome:
        print(headline(trained, args))
    registered = register_pretrained(trained, args)
    if registered is None:
        return trained
    if args.print_outcome:
        print(f"registered {registered.uri} (models:/{registered.name}@{args.alias})")
    return registered
