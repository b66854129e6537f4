"""Argument groups shared by the training recipes (pretrain, finetune, scratch) and the run they share."""

from __future__ import annotations

from dataclasses import dataclass

from transfer_laws.lightning_modules.config import at_least, positive
from transfer_laws.registry.schema import DEFAULT_EXPERIMENT


@dataclass(kw_only=True)
class StoreArgs:
    """Where runs land (the store part of tracking) and what the command shows while they train."""

    tracking_uri: str | None = None
    """MLflow tracking URI; default: MLFLOW_TRACKING_URI, else the embedded SQLite store under TRANSFER_LAWS_HOME."""
    experiment: str = DEFAULT_EXPERIMENT
    """MLflow experiment name for the run."""
    progress_bar: bool = True
    """Show Lightning's progress bar during training."""
    print_outcome: bool = True
    """Print the finished run and what its refit did (the demo turns this off: it prints one line per run)."""


@dataclass(kw_only=True)
class TrackingArgs(StoreArgs):
    """Where one run lands and what it is called (the run part of tracking)."""

    run_name: str | None = None
    """MLflow run name (default: derived from role, N and D_F)."""


@dataclass(kw_only=True)
class RefitArgs:
    """The law refit that follows a fine-tune or scratch run on the embedded store (no server to do it)."""

    refit_bootstrap: int = at_least(0, 1000)
    """Bootstrap draws of the law refit that follows the run on the embedded store (no server to do it)."""
    refit_plots: bool = True
    """Render the law's PNG plots in that refit (its slowest step; a demo or sweep can keep them for its last run)."""


@dataclass(kw_only=True)
class ShapeArgs:
    """The model's shape (ignored by finetune, which takes the checkpoint's)."""

    preset: str | None = None
    """A named shape from lightning_modules.config.PRESETS (e.g. 2x64); overrides n_layer/n_head/n_embd."""
    n_layer: int = positive(2)
    """Transformer blocks."""
    n_head: int = positive(2)
    """Attention heads per block."""
    n_embd: int = positive(64)
    """Residual stream width."""
    context_length: int = positive(128)
    """Tokens per training window."""


@dataclass(kw_only=True)
class DataArgs:
    """Corpora from the local workspace and how the run reads them."""

    corpus_max_mb: float | None = positive(4.0)
    """Cap on the size of built-in corpora in MB (None: everything the machine has)."""
    batch_size: int = positive(8)
    """Sequences per optimisation step."""
    test_tokens: int = positive(32768)
    """Tokens of the fixed held-out test set used for test_loss."""
    seed: int = at_least(0, 0)
    """Seed for subset order, initialisation and batching."""
    evals_per_epoch: float | None = positive(None)
    """Held-out evaluations per pass over the training data, at least 10 steps apart (overrides
    --train.eval-every-steps; None keeps it)."""


@dataclass(kw_only=True)
class TokenizerArgs:
    """The workspace tokenizer (a fine-tune takes its checkpoint's instead)."""

    vocab_size: int = positive(2048)
    """BPE vocabulary size of the workspace tokenizer."""
    tokenizer_corpus: str = "text"
    """Corpus the tokenizer is fitted on (the paper fitted its BPE to English text)."""
    tokenizer_max_mb: float = positive(4.0)
    """MB of tokenizer_corpus used to fit the tokenizer."""


def megabytes(value: float | None) -> int | None:
    """MB from the command line as a byte count."""
    return None if value is None else int(value * 1_000_000)
