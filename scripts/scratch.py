"""``transfer-laws scratch``: train from scratch on exactly D tokens of the target (the D_E reference curve).

The recipe is ``plugin.recipes.scratch``."""

from __future__ import annotations

from transfer_laws.plugin.recipes.scratch import Args, run

__all__ = ["Args", "run"]
