"""Synthetic runs of a known law, written straight into MLflow (no training): the refit tests' inputs.

Scratch losses follow Kaplan et al.'s L(N, D); a fine-tune at (N, D_F) gets the scratch loss at D_E = D_F + D_T
with D_T = K * D_F^ALPHA * N^BETA, so a correct fit recovers ALPHA and BETA.
"""

from __future__ import annotations

import itertools
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from transfer_laws.registry.schema import (
    METRIC_BEST_TEST_LOSS,
    PARAM_D_F_CHARS,
    PARAM_D_F_TOKENS,
    PARAM_N,
    PARAM_TRAIN_SPLIT_TOKENS,
    PARAM_VOCAB,
    ROLE_FINETUNE,
    ROLE_PRETRAIN,
    ROLE_SCRATCH,
    TAG_LAW,
    TAG_PARENT,
    TAG_PRETRAIN_RUN,
    TAG_ROLE,
    TAG_SOURCE,
    TAG_TARGET,
    TAG_TOKENIZER,
)

LAW = "text-to-python"
K, ALPHA, BETA = 1.9e4, 0.18, 0.38
N_C, ALPHA_N, D_C, ALPHA_D = 8.8e13, 0.076, 5.4e13, 0.095
SCRATCH_N = (1e5, 1e6, 1e7)
SCRATCH_D = tuple(10.0 ** (6 + 0.5 * i) for i in range(9))  # 1e6 .. 1e10
FINETUNE_D_F = (1e5, 3e5, 1e6, 3e6)
DIGEST = "tok-digest-1"
VOCAB = 2048
"""The runs' tokenizer vocabulary (the uniform model's loss is ln V)."""


def scratch_loss(n: float, d: float) -> float:
    """Kaplan's L(N, D) in nats/token."""
    return ((N_C / n) ** (ALPHA_N / ALPHA_D) + D_C / d) ** ALPHA_D


def finetune_loss(n: float, d_f: float) -> float:
    """The loss a fine-tune reaches: the scratch loss at its effective data."""
    return scratch_loss(n, d_f + K * d_f**ALPHA * n**BETA)


PARENT_CHECKPOINT = "synthetic-parent"
"""The registered checkpoint synthetic fine-tunes name as their parent (not a name tests register themselves)."""


def checkpoint_parent(client: MlflowClient, experiment_id: str) -> tuple[str, str]:
    """``(models:/name/version, pretrain run id)`` of the store's registered synthetic checkpoint, registered on first
    use: the reader only fits fine-tunes whose parent checkpoint the registry holds. Looked up every time (a store
    may be shared, and a user without write rights must still land fine-tunes under the existing parent)."""
    found = client.search_model_versions(f"name = '{PARENT_CHECKPOINT}'")
    if found:
        version = min(found, key=lambda v: int(v.version))
        return f"models:/{PARENT_CHECKPOINT}/{version.version}", version.run_id or ""
    pretrain = client.create_run(experiment_id, tags={TAG_ROLE: ROLE_PRETRAIN}).info.run_id
    client.set_terminated(pretrain, "FINISHED")
    try:
        client.create_registered_model(PARENT_CHECKPOINT)
    except Exception:  # registered meanwhile by another client of this store
        pass
    version = client.create_model_version(PARENT_CHECKPOINT, f"runs:/{pretrain}/checkpoint", run_id=pretrain)
    return f"models:/{PARENT_CHECKPOINT}/{version.version}", pretrain


def land_run(
    client: MlflowClient,
    experiment_id: str,
    role: str,
    n: float,
    d: float,
    loss: float | None,
    *,
    law: str = LAW,
    finish: bool = True,
    digest: str = DIGEST,
    split_tokens: int | None = None,
) -> str:
    """Create one run with the schema's params/metric/tags; end it FINISHED unless ``finish`` is False;
    ``split_tokens``: the train split's size it logs (``train_split_tokens``)."""
    source, _, target = law.partition("-to-")
    run = client.create_run(experiment_id)
    tags = [RunTag(TAG_ROLE, role), RunTag(TAG_TARGET, target), RunTag(TAG_TOKENIZER, digest)]
    if role == ROLE_FINETUNE:
        parent, pretrain_run = checkpoint_parent(client, experiment_id)
        tags += [RunTag(TAG_LAW, law), RunTag(TAG_SOURCE, source), RunTag(TAG_PARENT, parent),
                 RunTag(TAG_PRETRAIN_RUN, pretrain_run)]
    params = [Param(PARAM_N, str(int(n))), Param(PARAM_D_F_TOKENS, str(int(d)))]
    params += [Param(PARAM_D_F_CHARS, str(int(3 * d))), Param(PARAM_VOCAB, str(VOCAB))]
    if split_tokens is not None:
        params.append(Param(PARAM_TRAIN_SPLIT_TOKENS, str(split_tokens)))
    metrics = [] if loss is None else [Metric(METRIC_BEST_TEST_LOSS, loss, 0, 0)]
    client.log_batch(run.info.run_id, metrics=metrics, params=params, tags=tags)
    if finish:
        client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def land_scratch_runs(client: MlflowClient, experiment_id: str, law: str = LAW, **kw: Any) -> list[str]:
    """The scratch curves of the law's target at every (N, D) of the grid (``kw``: ``land_run``'s options)."""
    return [
        land_run(client, experiment_id, ROLE_SCRATCH, n, d, scratch_loss(n, d), law=law, **kw)
        for n, d in itertools.product(SCRATCH_N, SCRATCH_D)
    ]


def finetune_grid(count: int) -> list[tuple[float, float]]:
    """``count`` distinct (N, D_F) fine-tune points within the scratch curves' range."""
    points = []
    for i in range(count):
        n = SCRATCH_N[i % len(SCRATCH_N)]
        d_f = FINETUNE_D_F[(i // len(SCRATCH_N)) % len(FINETUNE_D_F)] * (1 + 0.01 * (i // 12))
        points.append((n, d_f))
    return points


def land_finetunes(client: MlflowClient, experiment_id: str, count: int, law: str = LAW, **kw: Any) -> list[str]:
    """``count`` fine-tunes of ``law`` on the grid, each ended FINISHED (unless ``finish=False``)."""
    return [
        land_run(client, experiment_id, ROLE_FINETUNE, n, d_f, finetune_loss(n, d_f), law=law, **kw)
        for n, d_f in finetune_grid(count)
    ]


def scratch_store_at(folder: Any) -> Any:
    """A SQLite store in ``folder`` holding the target's scratch curves (experiment ``runs``); returns its file."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    land_scratch_runs(client, client.create_experiment("runs", artifact_location=(folder / "a").as_uri()))
    return folder / "mlflow.db"
