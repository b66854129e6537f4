"""The training recipes: one typed entry function per kind of run with its argument dataclass (``run_pretrain``,
``run_finetune``, ``run_scratch``), the argument groups they share, the local workspace of corpora and tokenizers
they train on, and what a finished run reports (``outcome_lines``; the command line prints them).

Import-light: the recipes import torch, Lightning and MLflow only when they train (``plugin.training``), so a
command's ``--help`` can build its flags from these dataclasses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transfer_laws.plugin._lazy import lazy_names

if TYPE_CHECKING:  # what mypy reads; at run time each name loads on first use (``lazy_names``)
    from transfer_laws.plugin.recipes import workspace
    from transfer_laws.plugin.recipes.args import (
        DataArgs,
        RefitArgs,
        ShapeArgs,
        StoreArgs,
        TokenizerArgs,
        TrackingArgs,
        megabytes,
    )
    from transfer_laws.plugin.recipes.errors import BadInput, UserError
    from transfer_laws.plugin.recipes.finetune import FinetuneArgs, run_finetune
    from transfer_laws.plugin.recipes.outcome import outcome_lines, refit_lines
    from transfer_laws.plugin.recipes.pretrain import PretrainArgs, model_config, register_pretrained, run_pretrain
    from transfer_laws.plugin.recipes.scratch import ScratchArgs, run_scratch

_HOMES = {
    "workspace": "transfer_laws.plugin.recipes.workspace",
    "DataArgs": "transfer_laws.plugin.recipes.args",
    "RefitArgs": "transfer_laws.plugin.recipes.args",
    "ShapeArgs": "transfer_laws.plugin.recipes.args",
    "StoreArgs": "transfer_laws.plugin.recipes.args",
    "TokenizerArgs": "transfer_laws.plugin.recipes.args",
    "TrackingArgs": "transfer_laws.plugin.recipes.args",
    "megabytes": "transfer_laws.plugin.recipes.args",
    "BadInput": "transfer_laws.plugin.recipes.errors",
    "UserError": "transfer_laws.plugin.recipes.errors",
    "FinetuneArgs": "transfer_laws.plugin.recipes.finetune",
    "run_finetune": "transfer_laws.plugin.recipes.finetune",
    "outcome_lines": "transfer_laws.plugin.recipes.outcome",
    "refit_lines": "transfer_laws.plugin.recipes.outcome",
    "PretrainArgs": "transfer_laws.plugin.recipes.pretrain",
    "model_config": "transfer_laws.plugin.recipes.pretrain",
    "register_pretrained": "transfer_laws.plugin.recipes.pretrain",
    "run_pretrain": "transfer_laws.plugin.recipes.pretrain",
    "ScratchArgs": "transfer_laws.plugin.recipes.scratch",
    "run_scratch": "transfer_laws.plugin.recipes.scratch",
}
"""Where each public name lives: a command imports only the module its name needs (``--help`` stays cheap)."""

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
    "megabytes",
    "model_config",
    "outcome_lines",
    "refit_lines",
    "register_pretrained",
    "run_finetune",
    "run_pretrain",
    "run_scratch",
    "workspace",
]

__getattr__, __dir__ = lazy_names(globals(), _HOMES)
