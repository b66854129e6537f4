"""``transfer-laws finetune``: fine-tune a registered checkpoint on exactly D_F tokens of the target corpus.

The recipe is ``plugin.recipes.finetune``."""

from __future__ import annotations

from transfer_laws.plugin.recipes.finetune import Args, run

__all__ = ["Args", "run"]
