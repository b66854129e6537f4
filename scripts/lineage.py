"""``transfer-laws lineage``: a checkpoint and every run that started from it, or where a run came from, as a tree.

The target may be a checkpoint version (``models:/pretrained-text/3``), an alias (``models:/pretrained-text@champion``),
a registered model name (``pretrained-text``: every version) or a run id (a fine-tune: its ancestry; a pretraining
run: the versions it produced and their fine-tunes). Exit 0 with the tree, 2 when the target names nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from transfer_laws.registry.lineage import (
    checkpoint_version,
    lineage_of_run,
    lineage_of_version,
    versions_made_by,
    versions_named,
)
from transfer_laws.registry.reader import read_run_by_id
from transfer_laws.registry.schema import PARAM_D_F_TOKENS
from transfer_laws.registry.tracking import client_for, use_tracking_uri
from transfer_laws.scripts._errors import BadInput

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from transfer_laws.registry.records import CheckpointVersion

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(kw_only=True)
class Args:
    """Arguments of ``transfer-laws lineage``."""

    target: str = field(metadata={"positional": True})
    """models:/name/version, models:/name@alias, a registered model name (every version) or a run id."""
    tracking_uri: str | None = None
    """MLflow tracking URI; default: MLFLOW_TRACKING_URI, else the embedded SQLite store under TRANSFER_LAWS_HOME."""


def run(args: Args) -> int:
    uri = use_tracking_uri(args.tracking_uri, read_only=True)
    client = client_for(uri)
    target = args.target.strip()
    if target.startswith("models:/"):
        lines = version_tree(client, resolve_version(client, target), uri)
    elif _RUN_ID.match(target):
        lines = run_tree(client, target, uri)
    else:
        versions = versions_named(client, target)
        if not versions:
            raise BadInput(f"{target!r} is neither a registered model with versions, a models:/ URI nor a run id")
        lines = [line for v in versions for line in version_tree(client, v, uri)]
    print("\n".join(lines))
    return 0


def resolve_version(client: MlflowClient, uri: str) -> CheckpointVersion:
    """The version behind ``models:/name/version`` or ``models:/name@alias`` (BadInput, naming the aliases and
    versions there are, when there is none)."""
    try:
        return checkpoint_version(client, uri)
    except ValueError as exc:  # a malformed URI (CheckpointError) or a missing version (CheckpointNotFound)
        raise BadInput(str(exc)) from None


def version_tree(client: MlflowClient, checkpoint: CheckpointVersion, uri: str) -> list[str]:
    """A version's line (N, tokens seen, pretraining loss) and one line per run that started from it."""
    aliases = " ".join(f"@{a}" for a in checkpoint.aliases)
    pretrain = read_run_by_id(client, checkpoint.run_id)
    loss = pretrain.best_test_loss if pretrain else None
    head = (f"{checkpoint.uri} {aliases}".rstrip()
            + f"  N={_num(checkpoint.n_params)}  pretrained on {_num(checkpoint.tokens_seen)} tokens of "
              f"{checkpoint.corpus or '?'}  best loss {_loss(loss)}  (run {checkpoint.run_id or '?'})")
    runs = sorted(lineage_of_version(checkpoint.uri, tracking_uri=uri), key=lambda r: (r.d_f_tokens or 0, r.run_id))
    lines = [head]
    if not runs:
        lines.append("└── (no run has started from it yet)")
    for i, r in enumerate(runs):
        branch = "└──" if i == len(runs) - 1 else "├──"
        lines.append(f"{branch} fine-tune D_F={_num(r.d_f_tokens)}  best loss {_loss(r.best_test_loss)}  "
                     f"{r.status.lower()}  run {r.run_id}")
    return lines


def run_tree(client: MlflowClient, run_id: str, uri: str) -> list[str]:
    """A fine-tune's ancestry (checkpoint version, pretraining run and its data), or a pretraining run's versions
    and their fine-tunes."""
    run_ = read_run_by_id(client, run_id)
    if run_ is None:
        raise BadInput(f"no run {run_id} in this store")
    produced = versions_made_by(client, run_id)
    if produced:
        return [line for v in produced for line in version_tree(client, v, uri)]
    lineage = lineage_of_run(run_id, tracking_uri=uri)
    label = "D_F" if run_.tokens_param == PARAM_D_F_TOKENS else "D"  # a fine-tune's, or a run's logged before the split
    lines = [f"run {run_id} ({run_.role or '?'})  N={_num(run_.n_params)}  {label}={_num(run_.d_f_tokens)}"
             f"  best loss {_loss(run_.best_test_loss)}  {run_.status.lower()}"]
    if not lineage.parent_uri:
        lines.append("└── started from random weights (a pretraining or scratch run)")
        return lines
    lines.append(f"└── started from {lineage.parent_uri}")
    if lineage.pretrain_run_id:
        pre = read_run_by_id(client, lineage.pretrain_run_id)
        pre_loss = pre.best_test_loss if pre else None
        lines.append(f"    └── pretraining run {lineage.pretrain_run_id}  best loss {_loss(pre_loss)}")
        for j, item in enumerate(lineage.pretrain_inputs):
            branch = "└──" if j == len(lineage.pretrain_inputs) - 1 else "├──"
            lines.append(f"        {branch} data {item.name} ({item.context or '?'}) digest {item.digest}")
    return lines


def _num(value: str | float | None) -> str:
    """'12345' -> 12,345; '1.2e5' -> 120,000; missing -> ?."""
    if value is None:
        return "?"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "?"
    return f"{number:,.0f}" if number.is_integer() else f"{number:.4g}"


def _loss(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
