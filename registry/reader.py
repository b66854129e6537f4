"""MLflow runs -> run records (``registry.records.RunResult``): every finished run of a law, read with paginated
``search_runs``. The refit fits these records and the law page lists them, so both show the same runs.

A law ``<source>-to-<target>`` is measured by its fine-tunes (tag ``transfer.law``) against the scratch runs of
its target (tag ``transfer.target``). ``N`` is the non-embedding parameter count the training callback logged
(see ``transfer_laws.registry.schema``); nothing is recomputed here. A run that lacks a number the fit needs is
not dropped silently: it lands in ``LawInputs.excluded`` with the reason, which goes into the fit report.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from transfer_laws.registry.records import CheckpointVersion, RunResult, StoredRun
from transfer_laws.registry.schema import (
    CKPT_KIND_PRETRAINED,
    CKPT_TAG_CORPUS,
    CKPT_TAG_KIND,
    CKPT_TAG_N,
    CKPT_TAG_TOKENIZER_DIGEST,
    CKPT_TAG_TOKENS_SEEN,
    LAW_MODEL_PREFIX,
    LAW_TAG_LAW,
    METRIC_BEST_TEST_LOSS,
    PARAM_N,
    PARAM_TRAIN_SPLIT_TOKENS,
    ROLE_FINETUNE,
    ROLE_SCRATCH,
    TAG_LAW,
    TAG_PARENT,
    TAG_ROLE,
    TAG_SOURCE,
    TAG_TARGET,
    TAG_TOKENIZER,
    law_name,
    parse_law,
    stored_data_params,
)
from transfer_laws.registry.tracking import all_pages

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

PAGE_SIZE = 10_000
"""Runs per ``search_runs`` page (the SQL store allows up to 50,000; servers page the same way)."""


@dataclass
class LawInputs:
    """What the reader found for one law."""

    law: str
    """The law, ``<source>-to-<target>``."""
    points: list[RunResult] = field(default_factory=list)
    """Usable runs, the fitter's input, sorted by run id (so the same runs always give the same order)."""
    excluded: dict[str, str] = field(default_factory=dict)
    """Run id -> why the reader left it out."""
    experiment_ids: set[str] = field(default_factory=set)
    """Every experiment a run the reader found (used or excluded) lies in: who may read the law (the law page)."""
    run_experiments: dict[str, str] = field(default_factory=dict)
    """Run id -> its experiment, for every run the reader found: where the run's page is in MLflow's UI (a link
    by run id alone loses ``?workflowType=machine_learning`` in MLflow's redirect)."""
    split_tokens: int | None = None
    """Tokens in the target's train split, as the usable runs logged it (the fewest, should they differ): no run
    can train on more. None when no run logged it."""

    @property
    def run_ids(self) -> list[str]:
        """Ids of the usable runs."""
        return [p.run_id for p in self.points]


def search_all_runs(client: MlflowClient, experiment_ids: list[str], filter_string: str) -> list[Run]:
    """Every active run matching ``filter_string``, following page tokens to the end."""
    return all_pages(lambda token: client.search_runs(experiment_ids, filter_string=filter_string,
                                                      max_results=PAGE_SIZE, page_token=token))


def active_experiment_ids(client: MlflowClient) -> list[str]:
    """Ids of all active experiments, paginated."""
    return [e.experiment_id for e in all_pages(lambda token: client.search_experiments(max_results=1000,
                                                                                        page_token=token))]


def _quote(value: str) -> str:
    if "'" in value:
        raise ValueError(f"value {value!r} may not contain a quote")
    return f"'{value}'"


def law_filters(law: str) -> tuple[str, str]:
    """The ``search_runs`` filters of a law's finished fine-tunes and of its target's finished scratch runs."""
    _, target = parse_law(law)
    finished = "attributes.status = 'FINISHED'"
    finetunes = f"{finished} and tags.`{TAG_LAW}` = {_quote(law)} and tags.`{TAG_ROLE}` = '{ROLE_FINETUNE}'"
    scratch = f"{finished} and tags.`{TAG_TARGET}` = {_quote(target)} and tags.`{TAG_ROLE}` = '{ROLE_SCRATCH}'"
    return finetunes, scratch


def _number(values: Mapping[str, str | float], key: str, kind: type[float] | type[int]) -> float:
    raw = values.get(key)
    if raw is None:
        raise KeyError(key)
    value = float(raw)  # ValueError for text; "inf", "nan" and "1e400" parse, so check before int()
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{key}={raw} is not a positive finite number")
    return int(value) if kind is int else value


def read_run(run: Run) -> StoredRun:
    """The one parser of an MLflow run: its numbers as the record needs them (``StoredRun.record()``), None where
    missing or unsound, with the first problem in reading order (N, data, loss, characters)."""
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    role = tags.get(TAG_ROLE, "")
    tokens_key, chars_key = stored_data_params(params, role)  # scratch: D_tokens; old runs: D_F_*
    problems: list[str] = []

    def number(values: Mapping[str, str | float], key: str, kind: type[float] | type[int],
               optional: bool = False) -> float | None:
        if optional and values.get(key) in (None, ""):  # a count the fit can do without (D_F_chars)
            return None
        try:
            return _number(values, key, kind)
        except KeyError:
            problems.append(f"missing {key}")
        except ValueError as exc:
            problems.append(f"bad value: {exc}")
        return None

    n_params, d_f_tokens = number(params, PARAM_N, int), number(params, tokens_key, int)
    loss = number(metrics, METRIC_BEST_TEST_LOSS, float)
    chars = number(params, chars_key, int, optional=True)
    split = number(params, PARAM_TRAIN_SPLIT_TOKENS, int, optional=True)
    return StoredRun(
        run_id=run.info.run_id, status=run.info.status, start_time=run.info.start_time, role=role,
        name=run.info.run_name or run.info.run_id[:8], experiment_id=run.info.experiment_id,
        parent=tags.get(TAG_PARENT) or None, n_params=_count(n_params), d_f_tokens=_count(d_f_tokens),
        best_test_loss=loss, d_f_chars=_count(chars), split_tokens=_count(split), tokens_param=tokens_key,
        problem=problems[0] if problems else None)


def read_run_by_id(client: MlflowClient, run_id: str | None) -> StoredRun | None:
    """Run ``run_id`` as ``read_run`` parses it; None when there is no id or the store has no such run."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        return read_run(client.get_run(run_id))
    except MlflowException:
        return None


def read_checkpoint_version(mv: ModelVersion) -> CheckpointVersion:
    """The one parser of a checkpoint version's tags: its facts as ``CheckpointVersion`` holds them."""
    tags = dict(mv.tags or {})

    def count(key: str) -> int | None:
        try:
            value = float(tags.get(key, "nan"))
        except ValueError:
            return None
        return int(value) if math.isfinite(value) and value >= 0 else None

    return CheckpointVersion(name=str(mv.name), version=int(mv.version), run_id=mv.run_id or None,
                             aliases=tuple(sorted(getattr(mv, "aliases", None) or ())),
                             kind=tags.get(CKPT_TAG_KIND), n_params=count(CKPT_TAG_N),
                             tokens_seen=count(CKPT_TAG_TOKENS_SEEN), corpus=tags.get(CKPT_TAG_CORPUS) or None,
                             tokenizer_digest=tags.get(CKPT_TAG_TOKENIZER_DIGEST) or None)


def _count(value: float | None) -> int | None:
    return None if value is None else int(value)


def to_point(run: Run) -> RunResult:
    """An MLflow run as the project's run record (``read_run``); ``ValueError`` naming what is missing or wrong."""
    return read_run(run).record()


class _Parents:
    """Registered checkpoint versions looked up by ``models:/name/version``, each once (None: not in the registry)."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client
        self.found: dict[str, ModelVersion | None] = {}

    def get(self, uri: str) -> ModelVersion | None:
        from mlflow.exceptions import MlflowException

        if uri not in self.found:
            name, sep, version = uri.removeprefix("models:/").rpartition("/")
            try:
                ok = uri.startswith("models:/") and sep and name and version.isdigit()
                self.found[uri] = self.client.get_model_version(name, version) if ok else None
            except MlflowException:
                self.found[uri] = None
        return self.found[uri]


def lineage_problem(run: Run, law: str, parents: _Parents) -> str | None:
    """Why a fine-tune's recorded lineage contradicts ``law``, or None. The one parent check (the fitter has none):
    its own source and target tags, a parent the registry holds, that is a pretrained checkpoint (not a law model)
    pretrained on the law's source, with the fine-tune's tokenizer. Tags a run or version lacks are not checked."""
    source, target = parse_law(law)
    tags = run.data.tags
    for tag, want in ((TAG_SOURCE, source), (TAG_TARGET, target)):
        if tags.get(tag) and tags[tag] != want:
            return f"lineage: tagged {tag}={tags[tag]}, but the law {law} needs {want}"
    parent = tags.get(TAG_PARENT)
    if not parent:
        return f"fine-tune without a parent checkpoint (tag {TAG_PARENT})"
    version = parents.get(parent)
    if version is None:
        return f"parent checkpoint {parent} is not in the registry"
    ckpt = read_checkpoint_version(version)
    if ckpt.name.startswith(LAW_MODEL_PREFIX) or (version.tags or {}).get(LAW_TAG_LAW) or \
            ckpt.kind not in (None, CKPT_KIND_PRETRAINED):
        return f"lineage: parent {parent} is not a pretrained checkpoint (it is a version of {version.name})"
    if ckpt.corpus and ckpt.corpus != source:
        return f"lineage: parent {parent} was pretrained on {ckpt.corpus}, but the law {law} transfers from {source}"
    theirs, ours = ckpt.tokenizer_digest, tags.get(TAG_TOKENIZER)
    if theirs and ours and theirs != ours:
        return f"lineage: tokenizer {ours} differs from its parent {parent}'s tokenizer {theirs}"
    return None


def read_law_inputs(law: str, client: MlflowClient, experiment_ids: list[str] | None = None) -> LawInputs:
    """Every finished fine-tune of ``law`` and scratch run of its target, across all active experiments.

    Runs whose tokenizer digest differs from the most common one are excluded: losses in different tokenizers'
    units are not comparable. So are fine-tunes whose recorded lineage contradicts the law (``lineage_problem``).
    """
    ids = experiment_ids if experiment_ids is not None else active_experiment_ids(client)
    inputs = LawInputs(law=law)
    if not ids:
        return inputs
    runs = [run for f in law_filters(law) for run in search_all_runs(client, ids, f)]
    inputs.run_experiments = {run.info.run_id: run.info.experiment_id for run in runs}
    inputs.experiment_ids = set(inputs.run_experiments.values())
    parents = _Parents(client)
    digests = Counter(r.data.tags.get(TAG_TOKENIZER) for r in runs if r.data.tags.get(TAG_TOKENIZER))
    majority = digests.most_common(1)[0][0] if digests else None
    for run in runs:
        digest = run.data.tags.get(TAG_TOKENIZER)
        if majority is not None and digest and digest != majority:
            inputs.excluded[run.info.run_id] = f"tokenizer digest {digest} differs from the law's {majority}"
            continue
        stored = read_run(run)
        if stored.problem is not None:
            inputs.excluded[run.info.run_id] = stored.problem
            continue
        point = stored.record()
        problem = lineage_problem(run, law, parents) if point.role == ROLE_FINETUNE else None
        if problem:
            inputs.excluded[run.info.run_id] = problem
        else:
            inputs.points.append(point)
            if stored.split_tokens is not None:
                inputs.split_tokens = min(inputs.split_tokens or stored.split_tokens, stored.split_tokens)
    inputs.points.sort(key=lambda p: p.run_id)
    return inputs


def known_laws(client: MlflowClient, *, source: str | None = None, target: str | None = None) -> list[str]:
    """Laws that have a registered law model or at least one fine-tune, optionally of one source or target."""
    models = all_pages(lambda token: client.search_registered_models(
        filter_string=f"name LIKE '{LAW_MODEL_PREFIX}%'", max_results=1000, page_token=token))
    laws = {m.name.removeprefix(LAW_MODEL_PREFIX) for m in models}
    ids = active_experiment_ids(client)
    conditions = [f"tags.`{TAG_ROLE}` = '{ROLE_FINETUNE}'"]
    if source:
        conditions.append(f"tags.`{TAG_SOURCE}` = {_quote(source)}")
    if target:
        conditions.append(f"tags.`{TAG_TARGET}` = {_quote(target)}")
    if ids:
        for run in search_all_runs(client, ids, " and ".join(conditions)):
            if run.data.tags.get(TAG_LAW):
                laws.add(run.data.tags[TAG_LAW])
    return sorted(law for law in laws if _matches(law, source, target))


class UnknownLaw(ValueError):
    """A law this store has never seen (no law model, no fine-tune): a typo, not a failed fit. Bad input."""

    exit_code = 2

    def __init__(self, law: str, known: list[str]) -> None:
        import difflib

        self.suggestions = difflib.get_close_matches(law, known, n=3, cutoff=0.6)
        if self.suggestions:
            hint = "did you mean " + " or ".join(repr(c) for c in self.suggestions) + "?"
        elif known:
            hint = "known laws: " + ", ".join(known[:10]) + ("" if len(known) <= 10 else ", ...")
        else:
            hint = "this store has no law yet (a law appears once a fine-tune tagged with it lands)"
        super().__init__(f"no law {law!r} in this store; {hint}")


def check_law_known(law: str, client: MlflowClient, *, has_runs: bool = False) -> None:
    """Raise ``UnknownLaw`` (with did-you-mean) unless ``law`` has a registered law model or any fine-tune run.

    ``has_runs``: the reader found runs for it (its target's scratch runs): then it is a law whose fine-tunes have
    not landed yet, unless its name is one edit from a known law (a typo)."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(f"{LAW_MODEL_PREFIX}{law}")
        return
    except MlflowException:
        pass
    ids = active_experiment_ids(client)
    any_finetune = f"tags.`{TAG_LAW}` = {_quote(law)} and tags.`{TAG_ROLE}` = '{ROLE_FINETUNE}'"
    if ids and client.search_runs(ids, filter_string=any_finetune, max_results=1):
        return
    unknown = UnknownLaw(law, known_laws(client))
    if unknown.suggestions or not has_runs:
        raise unknown


def _matches(law: str, source: str | None, target: str | None) -> bool:
    """Whether ``law`` is well formed (a crafted model or tag name such as ``q'uote-to-python`` is not, so it never
    reaches a search filter) and of ``source``/``target`` when given."""
    try:
        law_source, law_target = parse_law(law)
        if law_name(law_source, law_target) != law:
            return False
    except ValueError:
        return False
    return (source is None or law_source == source) and (target is None or law_target == target)


def laws_for_run(run_id: str, client: MlflowClient) -> list[str]:
    """The laws a landed run feeds: a fine-tune its own law, a scratch run every law of its target."""
    run = client.get_run(run_id)
    tags = run.data.tags
    role = tags.get(TAG_ROLE)
    if role == ROLE_FINETUNE and tags.get(TAG_LAW):
        return [tags[TAG_LAW]] if _matches(tags[TAG_LAW], None, None) else []
    if role == ROLE_SCRATCH and tags.get(TAG_TARGET):
        return known_laws(client, target=tags[TAG_TARGET])
    return []
