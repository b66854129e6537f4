"""Fetch a registered law version (``models:/transfer-law-<law>@latest``) and load its fit."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from transfer_laws.registry.schema import LAW_ALIAS, LAW_MODEL_PREFIX, law_model_name
from transfer_laws.scripts._errors import BadInput, UserError


class LawNotFound(UserError):
    """The law has no usable version (none registered yet, or a version without its fit folder)."""


def law_version_uri(law: str, version: str = LAW_ALIAS) -> str:
    """``models:/transfer-law-<law>/<n>`` for a number, ``models:/transfer-law-<law>@<alias>`` otherwise."""
    name = law_model_name(law)
    return f"models:/{name}/{version}" if version.isdigit() else f"models:/{name}@{version}"


def load_law_version(law: str, version: str = LAW_ALIAS, dst: Path | None = None) -> tuple[Any, Any, Path]:
    """The fitted ``TransferLaw``, its ``ModelVersion`` and the local fit folder, from the active registry.

    A law name the store does not know, or a version the law does not have, is bad input (``BadInput``, naming the
    closest laws or the versions there are); a law with no version yet is ``LawNotFound``, saying how to make one.
    """
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    from transfer_laws.registry.fit import TransferLaw

    try:
        name = law_model_name(law)
    except ValueError as exc:
        raise BadInput(f"--law: {exc}") from None
    client = MlflowClient()
    try:
        mv = client.get_model_version(name, version) if version.isdigit() else \
            client.get_model_version_by_alias(name, version)
    except MlflowException:
        known = known_laws(client)
        if law not in known:
            raise BadInput(unknown_law_message(law, known)) from None
        existing = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
        if existing:
            raise BadInput(f"law {law} has no version {version!r}; its versions are "
                           f"{', '.join(map(str, existing))} (@latest is {existing[-1]})") from None
        raise LawNotFound(f"law {law} has no version yet (versions are made by `transfer-laws refit --law {law}` "
                          "once fine-tune and scratch runs have landed)") from None
    local = Path(download_artifacts(artifact_uri=law_version_uri(law, str(mv.version)),
                                    dst_path=str(dst or tempfile.mkdtemp(prefix="transfer-law-"))))
    folder = fit_folder_in(local)
    return TransferLaw.load(folder), mv, folder


def known_laws(client: Any) -> list[str]:
    """Every law with a registered model in the store (``transfer-law-<law>``), sorted."""
    models = client.search_registered_models(filter_string=f"name LIKE '{LAW_MODEL_PREFIX}%'", max_results=1000)
    return sorted(m.name.removeprefix(LAW_MODEL_PREFIX) for m in models)


def unknown_law_message(law: str, known: list[str]) -> str:
    """'no law X in this store; did you mean Y?' (never advice to refit the typo)."""
    import difflib

    close = difflib.get_close_matches(law, known, n=3, cutoff=0.6)
    if close:
        hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
    elif known:
        hint = "known laws: " + ", ".join(known[:10]) + ("" if len(known) <= 10 else ", ...")
    else:
        hint = "this store has no law yet (`transfer-laws refit --law <source>-to-<target>` makes one)"
    return f"no law {law!r} in this store; {hint}"


def fit_folder_in(model_dir: Path) -> Path:
    """The fit folder (written by ``TransferLaw.save``) inside a downloaded law model."""
    from transfer_laws.registry.fit._io import is_fit_folder

    candidates = sorted({p.parent for p in model_dir.rglob("*.json") if is_fit_folder(p.parent)})
    if not candidates:
        raise LawNotFound(f"no fit folder inside the law model at {model_dir}")
    return candidates[0]
