"""The training half: corpora and tokenizer, exact D_F budgets, GPT models at any N, the training module.

Names are re-exported lazily (PEP 562), so importing a torch-free submodule such as ``lightning_modules.config``
(what the command line builds its flags from) does not import torch through this package.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES: dict[str, str] = {
    **dict.fromkeys(("flops_per_token", "mfu", "peak_flops"), "flops"),
    **dict.fromkeys(("GPT", "checkpoint_from_bytes", "load_checkpoint", "non_embedding_params", "save_checkpoint",
                     "total_params"), "model"),
    # Settings and their errors: torch-free, so these names cost no torch import.
    **dict.fromkeys(("BudgetError", "CheckpointError", "DataConfig", "GPTConfig", "OptimConfig", "PRESETS", "preset",
                     "TrainConfig"), "config"),
    **dict.fromkeys(("TrainingDiverged", "TransferLM", "lr_factor"), "module"),
    **dict.fromkeys(("build_trainer", "resolve_precision"), "train"),
    # Data pipeline (corpora, tokenizer, exact D_F budgets).
    "CorpusError": "_sources",
    **dict.fromkeys(("CorpusManifest", "SplitStats", "build_corpus"), "corpora"),
    **dict.fromkeys(("TokenDataModule", "WindowDataset"), "data"),
    **dict.fromkeys(("TokenizerInfo", "load_tokenizer", "tokenizer_digest", "tokens_per_char", "train_tokenizer"),
                    "tokenizer"),
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
