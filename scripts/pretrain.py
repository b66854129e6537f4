"""``transfer-laws pretrain``: pretrain a GPT on a source corpus and register its best checkpoint.

The recipe is ``plugin.recipes.pretrain``."""

from __future__ import annotations

from transfer_laws.plugin.recipes.pretrain import Args, run

__all__ = ["Args", "run"]
