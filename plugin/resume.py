"""Resume: a checkpoint carries its MLflow run id, and resuming continues that same run.

``save_checkpoint(model, folder, extra=checkpoint_extra(run_id))`` stores ``{"run_id": ...}`` in config.json's
``extra`` (the key ``scripts._train`` also writes); ``resume_logger(folder)`` returns an ``MLFlowLogger`` bound to
that run, so metrics of the resumed fit land in the original run instead of a new one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RUN_ID_KEY = "run_id"


def checkpoint_extra(run_id: str, **more: Any) -> dict[str, Any]:
    """The ``extra`` for ``save_checkpoint`` that lets a later fit resume run ``run_id``."""
    if not run_id:
        raise ValueError("checkpoint_extra needs the MLflow run id of the run being checkpointed")
    return {RUN_ID_KEY: run_id, **more}


def checkpoint_run_id(folder: Path) -> str:
    """The MLflow run id a checkpoint folder was saved from; CheckpointError if it carries none."""
    from transfer_laws.lightning_modules import CheckpointError

    config = Path(folder) / "config.json"
    try:
        extra = json.loads(config.read_text()).get("extra") or {}
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {folder}: unreadable config.json: {exc}") from exc
    run_id = extra.get(RUN_ID_KEY)
    if not run_id:
        raise CheckpointError(f"checkpoint {folder} carries no MLflow run id (save it with checkpoint_extra)")
    return str(run_id)


def resume_logger(folder: Path, tracking_uri: str | None = None, **kwargs: Any) -> Any:
    """An ``MLFlowLogger`` that continues the run the checkpoint in ``folder`` came from."""
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow import MlflowClient

    run_id = checkpoint_run_id(folder)
    MlflowClient(tracking_uri=tracking_uri).get_run(run_id)  # a missing run fails here, before training
    return MLFlowLogger(run_id=run_id, tracking_uri=tracking_uri, **kwargs)
