"""The training half: corpora and tokenizer, exact D_F budgets, GPT models at any N, the training module."""

from transfer_laws.lightning_modules.mfu import flops_per_token, mfu, peak_flops
from transfer_laws.lightning_modules.model import (
    GPT,
    PRESETS,
    CheckpointError,
    GPTConfig,
    load_checkpoint,
    non_embedding_params,
    preset,
    save_checkpoint,
    total_params,
)
from transfer_laws.lightning_modules.module import OptimConfig, TrainingDiverged, TransferLM, lr_factor
from transfer_laws.lightning_modules.train import TrainConfig, build_trainer, resolve_precision

__all__ = [
    "GPT",
    "PRESETS",
    "CheckpointError",
    "GPTConfig",
    "OptimConfig",
    "TrainConfig",
    "TrainingDiverged",
    "TransferLM",
    "build_trainer",
    "flops_per_token",
    "load_checkpoint",
    "lr_factor",
    "mfu",
    "non_embedding_params",
    "peak_flops",
    "preset",
    "resolve_precision",
    "save_checkpoint",
    "total_params",
]

# Data pipeline (corpora, tokenizer, exact D_F budgets): appended re-exports.
from transfer_laws.lightning_modules._sources import CorpusError  # noqa: E402
from transfer_laws.lightning_modules.corpora import CorpusManifest, SplitStats, build_corpus  # noqa: E402
from transfer_laws.lightning_modules.data import BudgetError, DataConfig, TokenDataModule, WindowDataset  # noqa: E402
from transfer_laws.lightning_modules.tokenizer import (  # noqa: E402
    TokenizerInfo,
    load_tokenizer,
    tokenizer_digest,
    tokens_per_char,
    train_tokenizer,
)

__all__ += [
    "BudgetError",
    "CorpusError",
    "CorpusManifest",
    "DataConfig",
    "SplitStats",
    "TokenDataModule",
    "TokenizerInfo",
    "WindowDataset",
    "build_corpus",
    "load_tokenizer",
    "tokenizer_digest",
    "tokens_per_char",
    "train_tokenizer",
]
