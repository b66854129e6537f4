"""Two laws of one target with known k, alpha, beta whose D_T lines cross inside the fine-tuning data: synthetic runs
written straight into an MLflow store (tests/law_runs.py's scratch curves), refitted, with registered checkpoints.

TEXT transfers less at small D_F and more at large D_F than MIX (its alpha is larger, its k smaller); with equal
betas the lines cross at D_F = (k_mix / k_text)^(1 / (alpha_text - alpha_mix)) at every N.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from law_runs import FINETUNE_D_F, SCRATCH_N, land_run, land_scratch_runs, scratch_loss

from transfer_laws.registry import schema

TARGET = "python"
TRUTH = {"text": (1.0e3, 0.30, 0.38), "mix": (1.4e4, 0.10, 0.38)}
"""k (tokens), alpha, beta per source."""
CROSSING = (TRUTH["mix"][0] / TRUTH["text"][0]) ** (1.0 / (TRUTH["text"][1] - TRUTH["mix"][1]))
"""Where the two true lines meet (about 5.4e5 tokens: inside FINETUNE_D_F = 1e5 .. 3e6)."""
NOISE = 0.002
"""Fine-tunes' loss noise (lognormal sigma): the laws' intervals have a width, as on real runs."""


def true_d_t(source: str, n: float, d_f: float) -> float:
    k, alpha, beta = TRUTH[source]
    return k * d_f**alpha * n**beta


def land_law(client: Any, experiment_id: str, source: str, noise: float = NOISE, target: str = TARGET) -> list[str]:
    """A fine-tune of ``<source>-to-<target>`` at every (N, D_F) of the grid, its loss the scratch loss at D_F + D_T
    times exp(Normal(0, noise)) (seeded: the same store every time)."""
    law = schema.law_name(source, target)
    rng = np.random.default_rng(sorted(TRUTH).index(source))
    return [land_run(client, experiment_id, schema.ROLE_FINETUNE, n, d_f,
                     scratch_loss(n, d_f + true_d_t(source, n, d_f)) * float(np.exp(noise * rng.normal())), law=law)
            for n, d_f in itertools.product(SCRATCH_N, FINETUNE_D_F)]


def register_checkpoints(client: Any, experiment_id: str) -> dict[str, str]:
    """``pretrained-<source>`` versions, one per N of the grid (version tag N), the largest under ``@champion``:
    registry records only (the ranking reads their tags, never their weights)."""
    champions = {}
    for source in TRUTH:
        name = f"pretrained-{source}"
        if not client.search_registered_models(f"name = '{name}'"):  # a shared server may hold it already
            client.create_registered_model(name)
        run = client.create_run(experiment_id, tags={schema.TAG_ROLE: schema.ROLE_PRETRAIN}).info.run_id
        for n in SCRATCH_N:
            mv = client.create_model_version(name, f"runs:/{run}/checkpoint", run_id=run,
                                             tags={schema.CKPT_TAG_N: str(int(n)),
                                                   schema.CKPT_TAG_KIND: schema.CKPT_KIND_PRETRAINED})
        client.set_registered_model_alias(name, schema.DEFAULT_CHECKPOINT_ALIAS, mv.version)
        champions[source] = f"models:/{name}@{schema.DEFAULT_CHECKPOINT_ALIAS}"
    return champions


def build_store(uri: str, bootstrap: int = 200, target: str = TARGET) -> dict[str, Any]:
    """Scratch curves, both laws' fine-tunes and checkpoints in the store at ``uri``, each law refitted once."""
    from mlflow import MlflowClient

    from transfer_laws.registry.refit import refit_law

    client = MlflowClient(uri, uri)
    exp = client.create_experiment(f"two-laws-{target}")
    land_scratch_runs(client, exp, law=schema.law_name("text", target))
    champions = register_checkpoints(client, exp)
    results = {}
    for source in TRUTH:
        land_law(client, exp, source, target=target)
        results[source] = refit_law(schema.law_name(source, target), tracking_uri=uri, bootstrap=bootstrap)
        assert results[source].version, f"{source} did not fit: {results[source].reason}"
    return {"client": client, "exp": exp, "champions": champions, "results": results, "uri": uri}


def largest_n() -> float:
    return max(SCRATCH_N)


def ln_ratio_at(n: float, d_f: float) -> float:
    """ln(D_T mix / D_T text) by the truth: > 0 below the crossing."""
    return math.log(true_d_t("mix", n, d_f) / true_d_t("text", n, d_f))


THIN = ("code", (2.0e5, 0.30, 0.38))
"""A third source whose law says it transfers most, fitted on three fine-tunes only: exact, so undetermined."""


def land_thin_law(client: Any, experiment_id: str, target: str = TARGET) -> str:
    """Three fine-tunes of ``code-to-<target>`` (two sizes, two D_F) and its refit; returns the law."""
    from transfer_laws.registry.refit import refit_law

    source, (k, alpha, beta) = THIN
    law = schema.law_name(source, target)
    for n, d_f in ((SCRATCH_N[0], FINETUNE_D_F[0]), (SCRATCH_N[0], FINETUNE_D_F[-1]), (SCRATCH_N[-1], FINETUNE_D_F[0])):
        land_run(client, experiment_id, schema.ROLE_FINETUNE, n, d_f, scratch_loss(n, d_f + k * d_f**alpha * n**beta),
                 law=law)
    assert refit_law(law, tracking_uri=client.tracking_uri, bootstrap=100).version
    return law
