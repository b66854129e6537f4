"""Fetch a registered law version (``models:/transfer-law-<law>@latest``) and load its fit."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from transfer_laws.registry.schema import LAW_ALIAS, law_model_name


class LawNotFound(LookupError):
    """No registered version of the law matches."""


def law_version_uri(law: str, version: str = LAW_ALIAS) -> str:
    """``models:/transfer-law-<law>/<n>`` for a number, ``models:/transfer-law-<law>@<alias>`` otherwise."""
    name = law_model_name(law)
    return f"models:/{name}/{version}" if version.isdigit() else f"models:/{name}@{version}"


def load_law_version(law: str, version: str = LAW_ALIAS, dst: Path | None = None) -> tuple[Any, Any, Path]:
    """The fitted ``TransferLaw``, its ``ModelVersion`` and the local fit folder, from the active registry."""
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    from transfer_laws.registry.fit import TransferLaw

    client = MlflowClient()
    name = law_model_name(law)
    try:
        mv = client.get_model_version(name, version) if version.isdigit() else \
            client.get_model_version_by_alias(name, version)
    except MlflowException:
        raise LawNotFound(f"no version {version!r} of law model {name} (run `transfer-laws refit --law {law}` "
                          "after fine-tune and scratch runs have landed)") from None
    local = Path(download_artifacts(artifact_uri=law_version_uri(law, str(mv.version)),
                                    dst_path=str(dst or tempfile.mkdtemp(prefix="transfer-law-"))))
    folder = fit_folder_in(local)
    return TransferLaw.load(folder), mv, folder


def fit_folder_in(model_dir: Path) -> Path:
    """The fit folder (written by ``TransferLaw.save``) inside a downloaded law model."""
    from transfer_laws.registry.fit._io import is_fit_folder

    candidates = sorted({p.parent for p in model_dir.rglob("*.json") if is_fit_folder(p.parent)})
    if not candidates:
        raise LawNotFound(f"no fit folder inside the law model at {model_dir}")
    return candidates[0]
