"""The training recipes: one typed entry function per kind of run with its argument dataclass (``run_pretrain``,
``run_finetune``, ``run_scratch``), the argument groups they share, the local workspace of corpora and tokenizers
they train on, and what a finished run prints.

Import-light: the recipes import torch, Lightning and MLflow only when they train (``plugin.training``), so a
command's ``--help`` can build its flags from these dataclasses.
"""

from __future__ import annotations

from transfer_laws.plugin.recipes import workspace
from transfer_laws.plugin.recipes.args import (
    DataArgs,
    RefitArgs,
    ShapeArgs,
    StoreArgs,
    TokenizerArgs,
    TrackingArgs,
    log_line,
    megabytes,
)
from transfer_laws.plugin.recipes.errors import BadInput, UserError
from transfer_laws.plugin.recipes.finetune import FinetuneArgs, run_finetune
from transfer_laws.plugin.recipes.outcome import print_run, refit_lines
from transfer_laws.plugin.recipes.pretrain import PretrainArgs, model_config, register_pretrained, run_pretrain
from transfer_laws.plugin.recipes.scratch import ScratchArgs, run_scratch

__all__ = [
    "BadInput",
    "DataArgs",
    "FinetuneArgs",
    "PretrainArgs",
    "RefitArgs",
    "ScratchArgs",
    "ShapeArgs",
    "StoreArgs",
    "TokenizerArgs",
    "TrackingArgs",
    "UserError",
    "log_line",
    "megabytes",
    "model_config",
    "print_run",
    "refit_lines",
    "register_pretrained",
    "run_finetune",
    "run_pretrain",
    "run_scratch",
    "workspace",
]
