"""Pretrained checkpoints in the MLflow model registry: register a folder, load it back by URI.

A checkpoint is a folder written by ``save_checkpoint`` (``model.safetensors`` + ``config.json``, optionally a
``tokenizer/`` folder): no pickle. Registering makes it an MLflow LoggedModel holding the folder's files plus a
``manifest.json`` of SHA-256 digests, and a registered-model version tagged with N, tokens seen, corpus and the
digests (schema ``CKPT_TAG_*``) that takes an alias. Loading downloads the files from whatever artifact store the
server uses (local, S3) and reads each file once: its bytes are checked against the manifest and the model is built
from those same bytes, so a missing, corrupted or truncated file is a clear ``CheckpointError`` before any training
starts, and what was checked is what trains.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transfer_laws.lightning_modules.config import (  # torch-free: raising or parsing costs no torch import
    CheckpointError,
    parse_model_uri,
)
from transfer_laws.registry.lineage import update_checkpoint_lineage
from transfer_laws.registry.schema import (
    CHECKPOINT_ARTIFACT,
    CKPT_KIND_PRETRAINED,
    CKPT_TAG_CORPUS,
    CKPT_TAG_CORPUS_DIGEST,
    CKPT_TAG_KIND,
    CKPT_TAG_N,
    CKPT_TAG_TOKENIZER_DIGEST,
    CKPT_TAG_TOKENS_SEEN,
    DEFAULT_CHECKPOINT_ALIAS,
    DEFAULT_EXPERIMENT,
    MLFLOW_NOTE,
    TAG_SOURCE,
    checkpoint_model_name,
    ui_route,
)
from transfer_laws.registry.tracking import (
    client_for,
    ensure_experiment,
    fluent_uri,
    get_version,
    mark_registered,
    model_id_of,
    resolve_tracking_uri,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from transfer_laws.lightning_modules.model import GPT

MANIFEST = "manifest.json"
FORBIDDEN_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt")


@dataclass(frozen=True)
class RegisteredCheckpoint:
    """A checkpoint version in the registry."""

    name: str
    """Registered model name."""
    version: int
    """Version number."""
    model_id: str
    """MLflow LoggedModel id (``m-...``) holding the files."""
    uri: str
    """``models:/name/version``."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A registered checkpoint downloaded and verified."""

    folder: Path
    """Local folder with the checkpoint files (``load_checkpoint(folder)`` reads it)."""
    name: str
    """Registered model name."""
    version: int
    """Version number the URI resolved to."""
    model_id: str
    """LoggedModel id, logged as a fine-tune's model input."""
    pretrain_run_id: str | None
    """The run that produced the checkpoint."""
    tokenizer_digest: str | None
    """Digest of the tokenizer the checkpoint was trained with."""
    parent_uri: str
    """``models:/name/<version number>``: the exact version (an alias moves; this does not)."""
    model: GPT
    """The GPT read from the folder when it was verified (its ``config`` is the checkpoint's shape): a fine-tune
    starts from it instead of reading the files again."""
    extra: dict[str, Any] | None = None  # JSON read from config.json: any JSON value
    """The checkpoint's recorded facts (source corpus, tokenizer digest, ...) from its ``config.json``."""


def checkpoint_files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative POSIX paths), each read once; the manifest and ``*.tmp`` leftovers of an
    interrupted save are not part of a checkpoint."""
    folder = Path(folder)
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST and p.suffix != ".tmp")
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in paths}


def manifest_of(files: Mapping[str, bytes]) -> dict[str, dict[str, str | int]]:
    """SHA-256 and size of each file's bytes: what ``manifest.json`` records and loading checks."""
    return {name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)} for name, data in files.items()}


def verified_files(folder: Path, keep: Collection[str] = ()) -> dict[str, bytes]:
    """Read each file ``manifest.json`` lists once and check its size and SHA-256 against it; return the bytes of
    the files named in ``keep``, so a caller builds from exactly what was checked without reading it again.

    CheckpointError naming the first missing, truncated or altered file.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"checkpoint {folder} has no {MANIFEST}")
    try:
        expected = json.loads(path.read_text())
        entries = [(str(name), int(entry["bytes"]), str(entry["sha256"])) for name, entry in expected.items()]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint {folder}: unreadable {MANIFEST}: {exc}") from exc
    kept = {}
    for name, size, sha256 in entries:
        try:
            data = (folder / name).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise CheckpointError(f"checkpoint {folder}: file {name} is missing") from exc
        except OSError as exc:
            raise CheckpointError(f"checkpoint {folder}: file {name} cannot be read: {exc}") from exc
        got = manifest_of({name: data})[name]
        if got["bytes"] != size:
            raise CheckpointError(f"checkpoint {folder}: file {name} is truncated or padded "
                                  f"({got['bytes']} bytes, expected {size})")
        if got["sha256"] != sha256:
            raise CheckpointError(f"checkpoint {folder}: file {name} is corrupted (SHA-256 mismatch)")
        if name in keep:
            kept[name] = data
    return kept


def register_checkpoint(folder: Path, *, name: str = checkpoint_model_name("text"),
                        alias: str = DEFAULT_CHECKPOINT_ALIAS, run_id: str | None = None,
                        tags: Mapping[str, object] | None = None,
                        tracking_uri: str | None = None) -> RegisteredCheckpoint:
    """Register a checkpoint folder as a new version of ``name`` and point ``alias`` at it.

    Version tags come from config.json's ``extra`` (``tokens_seen``, ``corpus``, ``corpus_digest``,
    ``tokenizer_digest``) and N from the model shape (non-embedding parameters, ``non_embedding_params``);
    ``tags`` override or add. The folder is validated first: a bad folder registers nothing.
    """

    from transfer_laws.lightning_modules.model import (  # lazy: torch, only when a checkpoint is read
        checkpoint_from_bytes,
        non_embedding_params,
    )

    folder = Path(folder)
    pickles = [p.name for p in folder.rglob("*") if p.suffix in FORBIDDEN_SUFFIXES]
    if pickles:
        raise CheckpointError(f"checkpoint {folder} holds pickle-format files {pickles}; only safetensors/JSON")
    files = checkpoint_files(folder)  # read once: validated, hashed into the manifest and staged from these bytes
    model, extra = checkpoint_from_bytes(files, str(folder))  # CheckpointError on a missing, corrupt or truncated file
    facts: dict[str, object] = {
        CKPT_TAG_KIND: CKPT_KIND_PRETRAINED,
        CKPT_TAG_N: non_embedding_params(model),
        CKPT_TAG_TOKENS_SEEN: extra.get("tokens_seen"),
        CKPT_TAG_CORPUS: extra.get("corpus") or extra.get("source"),
        CKPT_TAG_CORPUS_DIGEST: extra.get("corpus_digest"),
        CKPT_TAG_TOKENIZER_DIGEST: extra.get("tokenizer_digest"),
        **(tags or {}),
    }
    version_tags = {k: str(v) for k, v in facts.items() if v is not None}
    run_id = run_id or extra.get("run_id")
    client = client_for(tracking_uri)
    experiment_id = _experiment_for(client, run_id, tracking_uri)

    logged = client.create_logged_model(experiment_id, name=name, source_run_id=run_id, tags=version_tags)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            staged = Path(tmp) / "checkpoint"
            _stage(files, staged)
            client.log_model_artifacts(logged.model_id, str(staged))
    except BaseException:
        client.finalize_logged_model(logged.model_id, "FAILED")
        raise
    client.finalize_logged_model(logged.model_id, "READY")

    _ensure_registered_model(client, name)
    with fluent_uri(client.tracking_uri):  # a SQL registry looks the logged model up in the global store
        mv = client.create_model_version(name, source=f"models:/{logged.model_id}", run_id=run_id,
                                         tags=version_tags, model_id=logged.model_id)
    version = int(mv.version)
    uri = f"models:/{name}/{version}"
    client.set_registered_model_alias(name, alias, mv.version)
    _describe(client, logged.model_id, name, version)
    return RegisteredCheckpoint(name=name, version=version, model_id=logged.model_id, uri=uri)


def _describe(client: MlflowClient, model_id: str, name: str, version: int) -> None:
    """Link the LoggedModel to its version and write the version's lineage description; the checkpoint is
    registered either way (a failure here is a warning, not a lost registration)."""
    import warnings

    try:
        link_logged_model(client, model_id, name, version)
        update_checkpoint_lineage(client, f"models:/{name}/{version}")
    except Exception as exc:  # descriptions are a view of the registration, never a reason to undo it
        warnings.warn(f"registered models:/{name}/{version} but could not describe it: {exc}", stacklevel=3)


def link_logged_model(client: MlflowClient, model_id: str, name: str, version: int) -> None:
    """Record on the LoggedModel that registry version ``name/version`` holds it (``tracking.mark_registered``) and
    say in its description where its lineage lives."""
    mark_registered(client, model_id, name, version)
    if not client.get_logged_model(model_id).tags.get(MLFLOW_NOTE):  # the model page's description: its lineage
        client.set_logged_model_tags(model_id, {MLFLOW_NOTE: (
            f"Pretrained checkpoint, registered as [`{name}` version {version}]"
            f"({ui_route(f'#/models/{name}/versions/{version}')}): "
            "that version's description lists every run that started from it (the fine-tunes that log this model "
            f"as their input), and `transfer-laws lineage models:/{name}/{version}` prints them as a tree.")})


def load_checkpoint_uri(uri: str, dst: Path | None = None, tracking_uri: str | None = None) -> LoadedCheckpoint:
    """Download a registered checkpoint (``models:/name@alias`` or ``models:/name/version``) and verify it."""
    from mlflow.exceptions import MlflowException

    from transfer_laws.lightning_modules.model import (  # lazy: torch, only when a checkpoint is read
        CONFIG_FILE,
        WEIGHTS_FILE,
        checkpoint_from_bytes,
    )

    name, _, _ = parse_model_uri(uri)
    client = client_for(tracking_uri)
    mv = get_version(client, uri)
    model_id = model_id_of(mv)
    logged = client.get_logged_model(model_id)
    folder = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix=f"{name}-v{mv.version}-"))
    folder.mkdir(parents=True, exist_ok=True)
    from mlflow.artifacts import download_artifacts

    try:
        local = Path(download_artifacts(artifact_uri=logged.artifact_location, dst_path=str(folder),
                                        tracking_uri=tracking_uri))
    except MlflowException as exc:
        raise CheckpointError(f"checkpoint {uri}: could not download its files: {exc.message}") from exc
    files = verified_files(local, keep=(CONFIG_FILE, WEIGHTS_FILE))  # each file read once, checked from its bytes
    model, extra = checkpoint_from_bytes(files, str(local))  # the weights really load; the run starts from these
    tags = dict(mv.tags or {})
    return LoadedCheckpoint(folder=local, name=name, version=int(mv.version), model_id=model_id,
                            pretrain_run_id=mv.run_id or logged.source_run_id,
                            tokenizer_digest=tags.get(CKPT_TAG_TOKENIZER_DIGEST),
                            parent_uri=f"models:/{name}/{int(mv.version)}", model=model, extra=extra)


class TokenizerMismatch(ValueError):
    """The data's tokenizer is not the one a checkpoint was trained with."""


def check_tokenizer(loaded: LoadedCheckpoint, data_tokenizer_digest: str) -> None:
    """Raise TokenizerMismatch unless the data is tokenized like the checkpoint's pretraining data."""
    if loaded.tokenizer_digest is None:
        raise TokenizerMismatch(f"{loaded.parent_uri} records no tokenizer digest; cannot check the data's tokenizer")
    if loaded.tokenizer_digest != data_tokenizer_digest:
        raise TokenizerMismatch(
            f"tokenizer mismatch: {loaded.parent_uri} was trained with tokenizer {loaded.tokenizer_digest}, the data "
            f"is tokenized with {data_tokenizer_digest}; use the checkpoint's tokenizer/ folder")


def register_run(run_id: str, *, name: str | None = None, alias: str = DEFAULT_CHECKPOINT_ALIAS,
                 checkpoints_root: Path | None = None, tracking_uri: str | None = None) -> RegisteredCheckpoint:
    """Register the checkpoint of a finished run: its ``checkpoint/`` artifacts, else ``checkpoints_root/run_id``.

    The run is read from, and the version written to, the one store ``tracking_uri`` resolves to (as every command
    resolves it: explicit, else ``MLFLOW_TRACKING_URI``, else the embedded store)."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    tracking_uri = resolve_tracking_uri(tracking_uri)
    client = client_for(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise CheckpointError(f"run {run_id} does not exist: {exc.message}") from exc
    name = name or checkpoint_model_name(run.data.tags.get(TAG_SOURCE, 'text'))
    logged = [f.path for f in client.list_artifacts(run_id)]
    if CHECKPOINT_ARTIFACT in logged:
        with tempfile.TemporaryDirectory() as tmp:
            local = download_artifacts(run_id=run_id, artifact_path=CHECKPOINT_ARTIFACT, dst_path=tmp,
                                       tracking_uri=tracking_uri)
            return register_checkpoint(Path(local), name=name, alias=alias, run_id=run_id, tracking_uri=tracking_uri)
    if checkpoints_root is not None and (Path(checkpoints_root) / run_id).is_dir():
        return register_checkpoint(Path(checkpoints_root) / run_id, name=name, alias=alias, run_id=run_id,
                                   tracking_uri=tracking_uri)
    raise CheckpointError(f"run {run_id} logged no '{CHECKPOINT_ARTIFACT}' artifacts and no local "
                            f"checkpoint folder was found under {checkpoints_root}")


def _stage(files: Mapping[str, bytes], staged: Path) -> None:
    """Write the checkpoint's files and their manifest, both from the bytes that were validated."""
    for name, data in files.items():
        (staged / name).parent.mkdir(parents=True, exist_ok=True)
        (staged / name).write_bytes(data)
    (staged / MANIFEST).write_text(json.dumps(manifest_of(files), indent=2, sort_keys=True))


def _experiment_for(client: MlflowClient, run_id: str | None, tracking_uri: str | None) -> str:
    if run_id:
        return client.get_run(run_id).info.experiment_id
    return ensure_experiment(DEFAULT_EXPERIMENT, tracking_uri)  # embedded store: artifacts under the home


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=(
            "Pretrained checkpoints (safetensors + config + tokenizer, checked against a SHA-256 manifest) that "
            f"fine-tunes start from: `transfer-laws finetune --from models:/{name}@{DEFAULT_CHECKPOINT_ALIAS} "
            "--d-f-tokens 30000` (D_F, the fine-tuning tokens). Each version's "
            "description lists the runs that started from it; its source run is the pretraining run."))
