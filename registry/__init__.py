"""Checkpoint registry, law fitting and the law model. Re-exports only, loaded on first use.

``import mlflow`` loads our run-context entry point, which reads names from ``registry.schema``; importing this
package must therefore stay free of numpy, scipy and the fitter, so every name below resolves lazily.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "Advice": "transfer_laws.registry.fit.advice",
    "Candidate": "transfer_laws.registry.fit.advice",
    "compute_flops": "transfer_laws.registry.fit.advice",
    "rank_next_runs": "transfer_laws.registry.fit.advice",
    "FitError": "transfer_laws.registry.fit",
    "Prediction": "transfer_laws.registry.fit",
    "RunResult": "transfer_laws.registry.records",
    "TransferLaw": "transfer_laws.registry.fit",
    "fit_transfer_law": "transfer_laws.registry.fit",
    "plot_law": "transfer_laws.registry.fit",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
