"""``transfer-laws register RUN_ID``: register the checkpoint of a finished pretraining run for reuse."""

from __future__ import annotations

from dataclasses import dataclass, field

from transfer_laws.plugin.training import checkpoints_root
from transfer_laws.registry.checkpoints import register_run
from transfer_laws.registry.schema import DEFAULT_CHECKPOINT_ALIAS
from transfer_laws.registry.tracking import use_tracking_uri


@dataclass(kw_only=True)
class Args:
    """Arguments of ``transfer-laws register``."""

    run_id: str = field(metadata={"positional": True})
    """The pretraining run whose best checkpoint to register."""
    name: str | None = None
    """Registered model name (default: pretrained-<source corpus>)."""
    alias: str = DEFAULT_CHECKPOINT_ALIAS
    """Alias the new version takes."""
    tracking_uri: str | None = None
    """MLflow tracking URI; default: MLFLOW_TRACKING_URI, else the embedded SQLite store under TRANSFER_LAWS_HOME."""


def run(args: Args) -> int:
    uri = use_tracking_uri(args.tracking_uri)
    registered = register_run(args.run_id, name=args.name, alias=args.alias, checkpoints_root=checkpoints_root(),
                              tracking_uri=uri)
    print(f"registered {registered.uri} (models:/{registered.name}@{args.alias})")
    return 0
