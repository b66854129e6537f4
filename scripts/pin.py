"""``transfer-laws pin``: Train the runs next-run advice chooses until the law is determined (``plugin.sweeps.pin``)."""

from __future__ import annotations

from transfer_laws.plugin.sweeps.pin import Args, run

__all__ = ["Args", "run"]
