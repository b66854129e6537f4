"""One run's result, the record every room passes around: the reader builds it from MLflow, the fitter fits it,
the law page lists it and training returns it (``plugin/training.TrainedRun`` adds what the training left behind).

A leaf like ``schema``: standard library only, so the fitter stays free of MLflow and the plugin's import stays
light. Units follow the schema's conventions: N non-embedding parameters, data in tokens of the run's tokenizer
(characters beside them when known), loss in nats/token.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_N = 1e15
"""Largest plausible non-embedding parameter count N: a thousand times today's largest models."""
MAX_D = {"tokens": 1e16, "chars": 1e17}
"""Largest plausible training data: beyond every text corpus there is (about 1e14 tokens of public text). The fitter
excludes runs beyond these; the CLI refuses them as bad input."""


@dataclass(frozen=True)
class RunResult:
    """One training run: where it sits in the (N, D) plane and the best held-out loss it reached."""

    run_id: str
    """MLflow run id (unique)."""
    role: str
    """``schema.ROLES``: ``"scratch"`` (random init), ``"finetune"`` (from a pretrained checkpoint) or
    ``"pretrain"``; the fitter uses scratch runs and fine-tunes and excludes the rest with a reason."""
    n_params: float
    """N: non-embedding parameters (token and position embeddings excluded; param ``N``)."""
    d_f_tokens: float
    """Target-distribution training tokens: D_F of a fine-tune (param ``D_F_tokens``), the dataset size D of a
    scratch run (param ``D_tokens``)."""
    best_test_loss: float
    """Best held-out loss over training, nats/token (metric ``best_test_loss``)."""
    d_f_chars: float | None = None
    """The same data counted in characters (the paper's unit), when known."""
    parent: str | None = None
    """Where a fine-tune's transfer came from: the registered checkpoint ``models:/name/version`` (tag
    ``transfer.parent``). The reader checks it against the law (``registry/reader.py``)."""
    experiment_id: str | None = None
    """The run's experiment, for links to MLflow's run page (None for runs that are not in a store)."""
    name: str | None = None
    """The run's name in MLflow."""
