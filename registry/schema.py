"""The run schema: every name our runs, checkpoints and law models carry in MLflow, defined once.

The Lightning callback writes these names, the refit reader reads them, the law page shows them. Change a name
here and every part follows.

Conventions (stated once, used everywhere):

- ``N`` is the number of *non-embedding* parameters: every parameter except the token-embedding and
  position-embedding tables (an untied unembedding would count; ours is tied to the token embedding, so it does
  not). ``N_total`` counts everything. See ``transfer_laws.lightning_modules.config.GPTConfig.non_embedding_params``.
- ``D_F_tokens`` is the exact number of fine-tuning tokens of the target distribution a fine-tune saw, in tokens
  of the run's tokenizer; ``D_F_chars`` is the number of characters of the text those tokens decode to (the
  paper's unit). Only fine-tunes carry them: a scratch run's training-set size is ``D_tokens``/``D_chars`` (the
  paper's D), a pretraining run's ``D_pretrain_tokens``/``D_pretrain_chars``. Runs logged before this split carry
  ``D_F_tokens`` whatever their role; ``data_tokens`` reads both.
- Loss is mean cross-entropy in nats/token on the target's fixed held-out test set; ``best_test_loss`` is the
  best value over training (early stopping), as in Hernandez et al. (2021).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# Params (numbers that identify the run's point in the (N, D) plane).
PARAM_N = "N"
PARAM_N_TOTAL = "N_total"
PARAM_D_F_TOKENS = "D_F_tokens"
PARAM_D_F_CHARS = "D_F_chars"
PARAM_D_TOKENS = "D_tokens"
"""A scratch run's training-set size in tokens of the target (the paper's D)."""
PARAM_D_CHARS = "D_chars"
PARAM_D_PRETRAIN_TOKENS = "D_pretrain_tokens"
"""The tokens of the source corpus a pretraining run trained on (steps x batch x context: what it saw, repeats
included), logged when it ends."""
PARAM_D_PRETRAIN_CHARS = "D_pretrain_chars"
"""Characters behind ``D_pretrain_tokens`` (at the corpus's characters per token)."""
PARAM_PRETRAIN_CORPUS_TOKENS = "pretrain_corpus_tokens"
"""Tokens in a pretraining run's training corpus (its size, whatever share of it the run saw)."""
PARAM_PRETRAIN_CORPUS_CHARS = "pretrain_corpus_chars"
"""Characters in that corpus."""
PARAM_TRAIN_SPLIT_TOKENS = "train_split_tokens"
"""Tokens in the train split a fine-tune's or scratch run's data is cut from, under its tokenizer: the largest D_F or
D that corpus can supply (next-run advice offers no run larger)."""
PARAM_N_LAYER = "n_layer"
PARAM_N_HEAD = "n_head"
PARAM_N_EMBD = "n_embd"
PARAM_CONTEXT = "context_length"
PARAM_VOCAB = "vocab_size"
PARAM_LR = "lr"
"""The learning rate a sweep's grid or tuning run trained with (beside its setting ``optim.lr``)."""

# The run's settings: every resolved hyperparameter is a param ``<group>.<field>`` (e.g. ``optim.lr``,
# ``train.max_steps``, ``data.batch_size``), and the whole resolved configuration is the YAML artifact below.
CONFIG_ARTIFACT = "config.yaml"

# Tags (searchable strings).
TAG_ROLE = "transfer.role"
"""One of ROLES."""
TAG_LAW = "transfer.law"
"""The law a fine-tune measures, ``<source>-to-<target>`` (e.g. ``text-to-python``). A scratch run serves every law
of its target: it carries the laws known when it started (a registered law model or checkpoint of that source),
comma-separated, so ``tags.`transfer.law` LIKE '%text-to-python%'`` finds a law's fine-tunes and scratch runs."""
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
TAG_PIN = "transfer.pin"
"""The pin loop (its Optuna study name) that chose and trained a run (``transfer-laws pin``)."""
TAG_PIN_REASON = "transfer.pin_reason"
"""Why the pin loop chose the run: the advice's predicted intervals after it, its compute, what the law lacked."""
TAG_ADAPTIVE_REASON = "transfer.adaptive_reason"
"""Why ``sweep --adaptive`` chose the run (or that the advice did not choose it)."""
TAG_LR_TUNING = "transfer.lr_tuning"
"""On a learning-rate tuning run: ``<size>/<role>``; on the sweep's parent run: the search settings."""
TAG_LR_TRIAL = "transfer.lr_tuning.trial"
"""On a learning-rate tuning run: its Optuna trial number."""
TAG_LR_SOURCE = "transfer.lr_source"
"""On a grid run: where its learning rate came from (tuned, with the study and trial, or the fixed setting)."""
TAG_LR_PREFIX = "transfer.lr."
"""On the sweep's parent run: ``transfer.lr.<size>.<role>`` = the learning rate tuning chose for that cell."""
TAG_PRUNED = "transfer.pruned_reason"
"""On a tuning run Optuna pruned: why."""
TAG_INPUT_TOKENS = "transfer.tokens"
"""On a run's dataset input: the tokens of that split the run read."""

# Dataset input contexts (the ``mlflow.data.context`` tag of a run's dataset inputs).
CONTEXT_PRETRAINING = "pretraining"
CONTEXT_FINETUNING = "fine-tuning"
CONTEXT_TRAINING = "training"
"""A scratch run's training data: trained from scratch, not fine-tuned."""
CONTEXT_TEST = "test"

# Metrics.
METRIC_TEST_LOSS = "test_loss"
METRIC_BEST_TEST_LOSS = "best_test_loss"
METRIC_BEST_STEP = "best_step"
"""The optimizer step of the evaluation that gave ``best_test_loss`` (-1: none), written at the end."""
METRIC_TRAIN_LOSS = "train_loss"
METRIC_N = "N"
"""N again, as a metric logged at the start: MLflow sorts params as text (100096 before 12768), metrics as numbers,
so the saved runs view sorts by this one."""

ROLE_PRETRAIN = "pretrain"
ROLE_SCRATCH = "scratch"
ROLE_FINETUNE = "finetune"
ROLES = (ROLE_PRETRAIN, ROLE_SCRATCH, ROLE_FINETUNE)

# Registry names.
LAW_MODEL_PREFIX = "transfer-law-"
CHECKPOINT_MODEL_PREFIX = "pretrained-"
"""Registered pretrained checkpoints are named ``pretrained-<source>`` (``pretrain`` registers under it)."""
DEMO_CHECKPOINT_TEMPLATE = f"models:/{CHECKPOINT_MODEL_PREFIX}text@demo-{{size}}"
"""The checkpoint of each model shape the demo registers (alias ``demo-<size>``): where sweeps, the pin loop and the
advice's commands start fine-tunes by default."""
LAW_ALIAS = "latest"
DEFAULT_CHECKPOINT_ALIAS = "champion"
DEFAULT_EXPERIMENT = "transfer-laws"
REFIT_EXPERIMENT = "transfer-laws-refits"
"""Where each refit logs its run (fit folder, plots, inputs.json, the law model) before a version is created."""

# Version tags of a registered pretrained checkpoint.
CKPT_TAG_N = "N"
CKPT_TAG_TOKENS_SEEN = "tokens_seen"
CKPT_TAG_CORPUS = "corpus"
CKPT_TAG_CORPUS_DIGEST = "corpus_digest"
CKPT_TAG_TOKENIZER_DIGEST = "tokenizer_digest"
CKPT_TAG_KIND = "transfer.kind"
CKPT_KIND_PRETRAINED = "pretrained-checkpoint"
CKPT_TAG_FINETUNES = "transfer.finetunes"
"""How many runs started from this checkpoint version (kept current by the plugin as fine-tunes start)."""
CKPT_TAG_LAST_FINETUNE = "transfer.last_finetune"
"""Run id of the latest run that started from this checkpoint version."""
CKPT_TAG_LINEAGE = "transfer.lineage"
"""Where the version's lineage lives: the run filter that finds every run started from it."""
CKPT_LINEAGE_TAGS = (CKPT_TAG_FINETUNES, CKPT_TAG_LAST_FINETUNE, CKPT_TAG_LINEAGE)
"""Tags the plugin keeps current on a checkpoint version; setting them is no reason to refit."""

# Environment variables: ours, and the ones MLflow sets that we read.
ENV_HOME = "TRANSFER_LAWS_HOME"
"""Folder of the embedded store (``mlflow.db`` + artifacts), corpora, tokenizers and checkpoints."""
ENV_VERBOSE = "TRANSFER_LAWS_VERBOSE"
"""``1``: the command line prints library warnings and full tracebacks (as ``--verbose``)."""
ENV_SWEEP = "TRANSFER_LAWS_SWEEP_ID"
"""Tag a run started in this environment with ``transfer.sweep`` (the run-context provider)."""
ENV_TRIAL = "TRANSFER_LAWS_TRIAL"
"""Tag a run started in this environment with ``transfer.trial``."""
ENV_GIT = "TRANSFER_LAWS_GIT"
"""``1`` (the current directory) or a checkout's path: tag runs with its commit and whether it is dirty."""
ENV_LOCK_DB = "TRANSFER_LAWS_LOCK_DB"
"""Database whose advisory locks serialise refits across server replicas (default: the server's backend store)."""
ENV_SERVER_URI = "TRANSFER_LAWS_SERVER_URI"
"""The server's own address, where its refits go (never a request's Host header)."""
ENV_BASIC_AUTH = "TRANSFER_LAWS_BASIC_AUTH"
"""``1``: the law page and its refit button sit behind MLflow's basic auth."""
ENV_WEBHOOK_SECRET = "TRANSFER_LAWS_WEBHOOK_SECRET"
"""HMAC secret of MLflow registry webhooks; unset, the webhook route answers 503."""
MLFLOW_ENV_SERVER_BACKEND = "_MLFLOW_SERVER_FILE_STORE"
"""Set by ``mlflow server`` for its workers: the backend store URI."""
MLFLOW_ENV_SERVER_REGISTRY = "_MLFLOW_SERVER_REGISTRY_STORE"
"""Set by ``mlflow server`` for its workers: the registry store URI."""
MLFLOW_ENV_STATIC_PREFIX = "_MLFLOW_STATIC_PREFIX"
"""Set by ``mlflow server --static-prefix`` for its workers."""
MLFLOW_ENV_ARTIFACTS_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
"""MLflow's switch for its tqdm bar on artifact downloads; the law page sets it to ``false`` in the server (unless
set), so a page load prints no "Downloading artifacts" bar in the server log."""
MLFLOW_ENV_USERNAME = "MLFLOW_TRACKING_USERNAME"
"""The refit service account's user name on a basic-auth server."""
MLFLOW_ENV_PASSWORD = "MLFLOW_TRACKING_PASSWORD"
"""That account's password."""

# Artifacts of a law's refit run and its law model.
INPUTS_ARTIFACT = "inputs.json"
"""The refit report: input run ids, ``excluded_by_reader`` ({run_id: reason}), ``excluded_by_fit``, warnings, checks."""
PLOTS_ARTIFACT = "plots"
"""The refit run's folder of SVG charts (rendered for the last landing of a burst, or on every refit)."""
CHECKPOINT_ARTIFACT = "checkpoint"
"""Where a pretraining run may log its checkpoint folder as run artifacts (``register_run`` looks there first)."""
LAW_FIT_ARTIFACT = "fit"
"""The law model's artifact holding the fit folder (``law.json`` + ``draws.npz``), logged once per version."""
LAW_FIT_IN_MODEL = f"artifacts/{LAW_FIT_ARTIFACT}"
"""Where that folder lies under the law model's artifact root (pyfunc keeps its artifacts under ``artifacts/``)."""

# Law model version tags.
LAW_TAG_FINGERPRINT = "transfer.fingerprint"
LAW_TAG_LAW = TAG_LAW
"""The law, on its versions and refit runs: the same key as a fine-tune's, so one filter finds both."""
LAW_TAG_REQUESTED_BY = "transfer.refit_requested_by"
"""Who pressed "refit now" on the law page (also on the refit run); absent for automatic refits."""
LAW_TAG_VERDICT = "transfer.verdict"
"""The fit checks' headline verdict."""
LAW_TAG_WARNINGS = "transfer.warnings"
"""How many warnings the fit carries (their text is in the version's description)."""
LAW_TAG_RUNS = "transfer.runs_used"
"""Runs the law was fitted on (fine-tunes with D_T > 0 plus the scratch runs behind D_E)."""
LAW_TAG_SOURCE = TAG_SOURCE
"""The law's source corpus, on its registered model and every version: MLflow's model list filters by it."""
LAW_TAG_TARGET = TAG_TARGET
"""The law's target corpus, on its registered model and every version (``tags.`transfer.target` = 'python'``)."""

# A target's transfer map: its laws side by side, logged on one run of the refit experiment per target.
TAG_MAP_TARGET = "transfer.map_target"
"""Tag of the refit-experiment run that holds a target's transfer map (one run per target, updated as its laws
get versions)."""
MAP_ARTIFACT = "map"
"""That run's folder: ``map.json`` and the charts comparing the target's sources (D_T lines, alpha, beta)."""
LAW_COEFFICIENTS = ("k", "alpha", "beta")
"""Each is a version tag ``<value> [<low>, <high>]`` (95% interval, 3 significant digits)."""
LAW_TAG_K_PER_CHAR = "k_per_char"
"""Version tag: k with D_F in characters (the paper's unit), ``<value> [<low>, <high>]``, or ``n/a (<why>)``."""

# Forecasts: every run a law version had not seen is predicted by it when a refit first reads the run
# (``registry/forecast.py``); 95% prediction intervals (parameter uncertainty and run-to-run noise).
METRIC_FORECAST_LOSS = "forecast.loss"
"""Run metric: the best held-out loss the version that was ``@latest`` before the run landed predicted for it."""
METRIC_FORECAST_LOW = "forecast.loss_low"
METRIC_FORECAST_HIGH = "forecast.loss_high"
"""The 95% prediction interval of ``forecast.loss``."""
METRIC_FORECAST_Z = "forecast.z"
"""ln(best_test_loss / forecast.loss) in units of the interval side it fell on: |z| <= 1.96 inside."""
TAG_FORECAST_VERSION = "transfer.forecast.version"
"""Run tag: ``models:/transfer-law-<law>/<n>``, the version that forecast the run (written once, never again)."""
TAG_FORECAST_REASON = "transfer.forecast.reason"
"""Run tag, instead of the metrics: why the version could not forecast the run (a new size, D_F outside the fitted
range, ...). Runs that landed before a law's first version carry neither tag."""
LAW_TAG_LOO = "transfer.loo"
"""Version tag: leave-one-out calibration, ``<inside>/<n> inside (<coverage>), mean |z| <z>``."""
LAW_TAG_LOO_COVERAGE = "transfer.loo_coverage"
LAW_TAG_LOO_MEAN_ABS_Z = "transfer.loo_mean_abs_z"
"""The same two numbers alone (searchable)."""
LAW_TAG_TRACK_RECORD = "transfer.track_record"
"""Version tag, kept current as later runs land: ``<inside>/<n> inside (<coverage>), mean |z| <z>`` of the runs
this version forecast."""
LAW_TAG_FORECAST_COVERAGE = "transfer.forecast_coverage"
LAW_TAG_FORECAST_MEAN_ABS_Z = "transfer.forecast_mean_abs_z"
"""The track record's two numbers alone (searchable)."""

# Refit bookkeeping: who holds a law's registry lock, and whether a RUNNING refit run is still alive.
WEBHOOK_DELIVERIES_TABLE = "transfer_laws_webhook_deliveries"
"""Table (in the server's SQL backend store) of webhook delivery ids seen within the timestamp window: sha256 of the
id and when it was first seen, so a replay is refused after a restart and by every server replica."""
LOCK_TAG_OWNER = "transfer.lock_owner"
"""On a registry lock model (``transfer-laws-lock.<law>``): ``host:pid:thread`` of its holder."""
LOCK_TAG_RENEWED = "transfer.lock_renewed"
"""On a registry lock model: a counter the live holder bumps every few seconds (its lease); a waiter that sees it
unchanged for a whole lease breaks the lock."""
REFIT_TAG_OWNER = "transfer.refit_owner"
"""Refit-run tag: ``host:pid`` of the process logging it (a later refit on that host closes it once the pid is gone)."""
REFIT_TAG_HEARTBEAT = "transfer.refit_heartbeat"
"""Refit-run tag: epoch ms the logging refit last said it was alive (every few seconds while the run is open)."""
REFIT_PARAM_N_RUNS = "n_runs"
"""Refit-run param: how many runs the fit used (the law page's version history shows it)."""
REFIT_PARAM_READ_AT = "inputs_read_at_ms"
"""Refit-run param: when the inputs were read (ms); runs that ended later are not covered by the version."""
REFIT_TAG_LOCK = "transfer.refit_lock"
"""Refit-run tag: the kind of law lock the refit held (``locks.lock_kind``), for the debris check."""
REFIT_TAG_DEBRIS = "transfer.debris"
"""Set on a refit run a later refit closed: why."""
TAG_INPUTS_DIGEST = "transfer.inputs_digest"
"""Law-version and refit-run tag: sha256 of the sorted ids of every run the refit read (``refit.inputs_digest``)."""
REGISTRY_LOCK_PREFIX = "transfer-laws-lock."
"""Name prefix of the registry-side lock models (outside ``transfer-law-*``, so no page or reader sees them)."""

# Experiments and registered models: MLflow's own tags.
MLFLOW_EXPERIMENT_KIND = "mlflow.experimentKind"
"""MLflow 3's UI opens an experiment in the view this tag names (without it, GenAI for new experiments)."""
EXPERIMENT_KIND_TRAINING = "custom_model_development"
"""The "Model training" view (MLflow 3.17's ``ExperimentKind.CUSTOM_MODEL_DEVELOPMENT``)."""
MLFLOW_NOTE = "mlflow.note.content"
"""An experiment's or run's description (Markdown) in MLflow's UI."""
MLFLOW_MODEL_VERSIONS = "mlflow.modelVersions"
MLFLOW_DATA_CONTEXT = "mlflow.data.context"
"""A run's dataset-input tag: the context the data served in (``CONTEXT_*`` above)."""
"""LoggedModel tag listing the registry versions made from it; the UI's "Registered" column reads it."""
LAW_PAGE_PATH = "/transfer-laws/"
"""The law page the server app plugin serves (``mlflow server --app-name transfer-laws``)."""
UI_WORKFLOW_QUERY = "workflowType=machine_learning"
"""Query of every MLflow UI link we write: MLflow 3.17 opens GenAI or Model training per browser (GenAI in a fresh
one, whatever the experiment's kind) unless the link names the view."""


def ui_route(route: str, root: str | None = None) -> str:
    """``#/experiments/1/runs/<id>`` -> ``#/experiments/1/runs/<id>?workflowType=machine_learning``: a link into
    MLflow's UI that opens its Model-training view (runs, params, registry) in any browser. Relative to MLflow's
    page (descriptions), or under ``root``, the server's script root (``""`` gives ``/#/...``, for the law page)."""
    route = route if route.startswith("#") else f"#{route}"
    link = f"{route}{'&' if '?' in route else '?'}{UI_WORKFLOW_QUERY}"
    return link if root is None else f"{root.rstrip('/')}/{link}"


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


def law_page_url(law: str, base_url: str = "") -> str:
    """The law's section of the law page (``mlflow server --app-name transfer-laws``): relative, or on the server at
    ``base_url``. Version descriptions link it; put it in any other description to link a law."""
    parse_law(law)
    return f"{base_url.rstrip('/')}{LAW_PAGE_PATH}#law-{law}"


def checkpoint_model_name(source: str) -> str:
    """The registered model that holds the pretrained checkpoints of one source corpus."""
    return f"{CHECKPOINT_MODEL_PREFIX}{source}"


def demo_checkpoint_template(source: str) -> str:
    """``DEMO_CHECKPOINT_TEMPLATE`` for a source corpus: the demo's checkpoint of each size pretrained on it."""
    return f"models:/{checkpoint_model_name(source)}@demo-{{size}}"


def law_model_name(law: str) -> str:
    """The registered model that holds the versions of a law's fit."""
    parse_law(law)
    return f"{LAW_MODEL_PREFIX}{law}"


def data_params(role: str) -> tuple[str, str]:
    """(tokens, chars) param names of the training data a run of ``role`` records."""
    if role == ROLE_FINETUNE:
        return PARAM_D_F_TOKENS, PARAM_D_F_CHARS
    if role == ROLE_SCRATCH:
        return PARAM_D_TOKENS, PARAM_D_CHARS
    return PARAM_D_PRETRAIN_TOKENS, PARAM_D_PRETRAIN_CHARS


def stored_data_params(params: Mapping[str, str], role: str) -> tuple[str, str]:
    """(tokens, chars) param names a logged run holds its training data under: its role's names, or
    ``D_F_tokens``/``D_F_chars`` for runs logged before the split (any role)."""
    names = data_params(role)
    if names[0] not in params and PARAM_D_F_TOKENS in params:
        return PARAM_D_F_TOKENS, PARAM_D_F_CHARS
    return names
