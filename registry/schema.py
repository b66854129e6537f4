"""The run schema: every name our runs, checkpoints and law models carry in MLflow, defined once.

The Lightning callback writes these names, the refit reader reads them, the law page shows them. Change a name
here and every part follows.

Conventions (stated once, used everywhere):

- ``N`` is the number of *non-embedding* parameters: every parameter except the token-embedding and
  position-embedding tables (an untied unembedding would count; ours is tied to the token embedding, so it does
  not). ``N_total`` counts everything. See ``transfer_laws.lightning_modules.model.non_embedding_params``.
- ``D_F_tokens`` is the exact number of training tokens of the target distribution a run saw as its dataset
  (a scratch run's training-set size, a fine-tune's fine-tuning budget), in tokens of the run's tokenizer;
  ``D_F_chars`` is the number of characters of the text those tokens decode to (the paper's unit).
- Loss is mean cross-entropy in nats/token on the target's fixed held-out test set; ``best_test_loss`` is the
  best value over training (early stopping), as in Hernandez et al. (2021).
"""

from __future__ import annotations

import re

# Params (numbers that identify the run's point in the (N, D) plane).
PARAM_N = "N"
PARAM_N_TOTAL = "N_total"
PARAM_D_F_TOKENS = "D_F_tokens"
PARAM_D_F_CHARS = "D_F_chars"
PARAM_N_LAYER = "n_layer"
PARAM_N_HEAD = "n_head"
PARAM_N_EMBD = "n_embd"
PARAM_CONTEXT = "context_length"
PARAM_VOCAB = "vocab_size"

# Tags (searchable strings).
TAG_ROLE = "transfer.role"
"""One of ROLES."""
TAG_LAW = "transfer.law"
"""The law a fine-tune measures, ``<source>-to-<target>`` (e.g. ``text-to-python``); absent on scratch runs."""
TAG_SOURCE = "transfer.source"
"""The pretraining corpus name (pretrain and finetune runs)."""
TAG_TARGET = "transfer.target"
"""The target corpus name (scratch and finetune runs): scratch runs serve every law with this target."""
TAG_PARENT = "transfer.parent"
"""``models:/name/version`` of the registered checkpoint a fine-tune started from."""
TAG_PRETRAIN_RUN = "transfer.pretrain_run"
"""Run id of the pretraining run behind the parent checkpoint."""
TAG_TOKENIZER = "transfer.tokenizer_digest"
"""Content digest of the tokenizer; only runs sharing it are comparable."""
TAG_SWEEP = "transfer.sweep"
TAG_TRIAL = "transfer.trial"
TAG_GIT_COMMIT = "transfer.git_commit"
TAG_GIT_DIRTY = "transfer.git_dirty"
TAG_CI_JOB = "transfer.ci_job"
TAG_PLUGIN_ERROR = "transfer.plugin_error"
TAG_FAILURE = "transfer.failure_reason"

# Metrics.
METRIC_TEST_LOSS = "test_loss"
METRIC_BEST_TEST_LOSS = "best_test_loss"
METRIC_TRAIN_LOSS = "train_loss"

ROLE_PRETRAIN = "pretrain"
ROLE_SCRATCH = "scratch"
ROLE_FINETUNE = "finetune"
ROLES = (ROLE_PRETRAIN, ROLE_SCRATCH, ROLE_FINETUNE)

# Registry names.
LAW_MODEL_PREFIX = "transfer-law-"
LAW_ALIAS = "latest"
DEFAULT_CHECKPOINT_ALIAS = "champion"
DEFAULT_EXPERIMENT = "transfer-laws"

# Version tags of a registered pretrained checkpoint.
CKPT_TAG_N = "N"
CKPT_TAG_TOKENS_SEEN = "tokens_seen"
CKPT_TAG_CORPUS = "corpus"
CKPT_TAG_CORPUS_DIGEST = "corpus_digest"
CKPT_TAG_TOKENIZER_DIGEST = "tokenizer_digest"
CKPT_TAG_KIND = "transfer.kind"
CKPT_KIND_PRETRAINED = "pretrained-checkpoint"

# Law model version tags.
LAW_TAG_FINGERPRINT = "transfer.fingerprint"
LAW_TAG_LAW = "transfer.law"
LAW_TAG_REQUESTED_BY = "transfer.refit_requested_by"
"""Who pressed "refit now" on the law page (also on the refit run); absent for automatic refits."""

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.]*$")


def law_name(source: str, target: str) -> str:
    """The law measured by fine-tuning on ``target`` from a checkpoint pretrained on ``source``."""
    for part in (source, target):
        if not _NAME.match(part):
            raise ValueError(f"corpus name {part!r} must be lower-case letters, digits, '_' or '.'")
    return f"{source}-to-{target}"


def parse_law(law: str) -> tuple[str, str]:
    """``"text-to-python"`` -> ``("text", "python")``."""
    source, sep, target = law.partition("-to-")
    if not sep or not source or not target:
        raise ValueError(f"law {law!r} is not of the form '<source>-to-<target>'")
    return source, target


def law_model_name(law: str) -> str:
    """The registered model that holds the versions of a law's fit."""
    parse_law(law)
    return f"{LAW_MODEL_PREFIX}{law}"
