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


@dataclass(frozen=True)
class StoredRun:
    """A run as the store holds it now, finished or not (the lineage lists fine-tunes still training): each number
    the record needs, None where the run has not logged it or logged something unusable (why: ``problem``).
    ``registry.reader.read_run`` is the one parser that makes it; ``record()`` is the run's ``RunResult``."""

    run_id: str
    """MLflow run id."""
    status: str
    """MLflow run status (FINISHED, FAILED, RUNNING...)."""
    start_time: int | None
    """When the run started, ms since the epoch."""
    role: str
    """Tag ``transfer.role`` ("" when the run has none)."""
    name: str
    """The run's name in MLflow (the id's first 8 characters when it has none)."""
    experiment_id: str
    """The run's experiment."""
    parent: str | None
    """Tag ``transfer.parent``: the checkpoint version a fine-tune started from."""
    n_params: int | None
    """N (param ``N``)."""
    d_f_tokens: int | None
    """Training tokens: D_F of a fine-tune, D of a scratch run (``RunResult.d_f_tokens``)."""
    best_test_loss: float | None
    """Best held-out loss, nats/token (None while a run is training, or if it failed before any evaluation)."""
    d_f_chars: int | None = None
    """The same data in characters (optional even in a record)."""
    split_tokens: int | None = None
    """Tokens in the train split the run's data was cut from (param ``train_split_tokens``; runs before it: None)."""
    tokens_param: str | None = None
    """The param ``d_f_tokens`` is read from (``schema.stored_data_params``): ``D_F_tokens`` for a fine-tune and for
    runs logged before the split, ``D_tokens`` for a scratch run, ``D_pretrain_tokens`` otherwise."""
    problem: str | None = None
    """Why this run is no record: ``missing <name>`` or ``bad value: ...``; None when it is one."""

    def record(self) -> RunResult:
        """The run's record; ``ValueError`` with ``problem`` when a number the law needs is missing or unsound."""
        if self.problem is not None or self.n_params is None or self.d_f_tokens is None \
                or self.best_test_loss is None:
            raise ValueError(self.problem or "incomplete run")
        return RunResult(run_id=self.run_id, role=self.role, n_params=self.n_params, d_f_tokens=self.d_f_tokens,
                         best_test_loss=self.best_test_loss, d_f_chars=self.d_f_chars, parent=self.parent,
                         experiment_id=self.experiment_id, name=self.name)


@dataclass(frozen=True)
class CheckpointVersion:
    """A registered model version and the facts its checkpoint tags record (``schema.CKPT_TAG_*``), as
    ``registry.reader.read_checkpoint_version`` parses them; None where a tag is missing or unsound."""

    name: str
    """Registered model name."""
    version: int
    """Version number."""
    run_id: str | None
    """The run that produced it (for a pretrained checkpoint, its pretraining run)."""
    aliases: tuple[str, ...] = ()
    """Its aliases, sorted (empty when read from a search, which carries none)."""
    kind: str | None = None
    """Tag ``transfer.kind`` (``pretrained`` for a checkpoint this project registered)."""
    n_params: int | None = None
    """N, non-embedding parameters."""
    tokens_seen: int | None = None
    """Pretraining tokens the checkpoint saw."""
    corpus: str | None = None
    """The corpus it was pretrained on (a law's source)."""
    tokenizer_digest: str | None = None
    """Digest of the tokenizer it was trained with."""

    @property
    def uri(self) -> str:
        """``models:/name/version``: the exact version (an alias moves; this does not)."""
        return f"models:/{self.name}/{self.version}"
