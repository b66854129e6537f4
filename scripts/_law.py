"""Fetch a registered law version (``models:/transfer-law-<law>@latest``) and load its fit."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from transfer_laws.registry.reader import UnknownLaw, check_law_known
from transfer_laws.registry.schema import LAW_ALIAS, law_model_name
from transfer_laws.registry.tracking import active_client
from transfer_laws.scripts._errors import BadInput, UserError

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from transfer_laws.registry.fit import TransferLaw


class LawNotFound(UserError):
    """The law has no usable version (none registered yet, or a version without its fit folder)."""


def law_version_uri(law: str, version: str = LAW_ALIAS) -> str:
    """``models:/transfer-law-<law>/<n>`` for a number, ``models:/transfer-law-<law>@<alias>`` otherwise."""
    name = law_model_name(law)
    return f"models:/{name}/{version}" if version.isdigit() else f"models:/{name}@{version}"


def load_law_version(law: str, version: str = LAW_ALIAS,
                     keep_in: Path | None = None) -> tuple[TransferLaw, ModelVersion, Path | None]:
    """The fitted ``TransferLaw``, its ``ModelVersion`` and, when ``keep_in`` is given, the fit folder copied there,
    from the active registry. The download goes to a temporary folder that is gone on return (a read leaves
    nothing behind, in the store or in /tmp).

    A law name the store does not know, or a version the law does not have, is bad input (``BadInput``, naming the
    closest laws or the versions there are); a law with no version yet is ``LawNotFound``, saying how to make one.
    """
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    # lazy: numpy and scipy (~1 s), not needed before this step
    from transfer_laws.registry.fit import TransferLaw

    try:
        name = law_model_name(law)
    except ValueError as exc:
        raise BadInput(f"--law: {exc}") from None
    client = active_client()
    try:
        mv = client.get_model_version(name, version) if version.isdigit() else \
            client.get_model_version_by_alias(name, version)
    except MlflowException:
        try:
            check_law_known(law, client)
        except UnknownLaw as exc:
            raise BadInput(str(exc)) from None
        existing = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
        if existing:
            raise BadInput(f"law {law} has no version {version!r}; its versions are "
                           f"{', '.join(map(str, existing))} (@latest is {existing[-1]})") from None
        raise LawNotFound(f"law {law} has no version yet (versions are made by `transfer-laws refit --law {law}` "
                          "once fine-tune and scratch runs have landed)") from None
    with tempfile.TemporaryDirectory(prefix="transfer-law-") as tmp:
        # Into our folder: without one MLflow hands back a local store's own model folder and writes its
        # registered_model_meta file there.
        local = Path(download_artifacts(artifact_uri=law_version_uri(law, str(mv.version)), dst_path=tmp))
        folder = fit_folder_in(local)
        fit = TransferLaw.load(folder)
        if keep_in is not None:
            shutil.copytree(folder, keep_in, dirs_exist_ok=True)
    return fit, mv, keep_in


def fit_folder_in(model_dir: Path) -> Path:
    """The fit folder (written by ``TransferLaw.save``) inside a downloaded law model."""
    # lazy: numpy and scipy (~1 s), not needed before this step
    from transfer_laws.registry.fit import is_fit_folder

    candidates = sorted({p.parent for p in model_dir.rglob("*.json") if is_fit_folder(p.parent)})
    if not candidates:
        raise LawNotFound(f"no fit folder inside the law model at {model_dir}")
    return candidates[0]
