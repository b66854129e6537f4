"""Where runs go: the tracking URI every command uses, and the embedded default.

Resolution order (the MLflow convention first): an explicit ``--tracking-uri``, then ``MLFLOW_TRACKING_URI``, then
the embedded default: a SQLite store file and a local artifact folder under ``TRANSFER_LAWS_HOME`` (default
``./transfer-laws-home``). No server, no Docker.
"""

from __future__ import annotations

import contextlib
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from transfer_laws.lightning_modules.config import CheckpointError, parse_model_uri
from transfer_laws.registry.experiment_view import experiment_tags
from transfer_laws.registry.schema import (
    DEFAULT_EXPERIMENT,
    ENV_HOME,
    LAW_MODEL_PREFIX,
    MLFLOW_ENV_SERVER_BACKEND,
    MLFLOW_ENV_SERVER_REGISTRY,
    MLFLOW_MODEL_VERSIONS,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.store.entities.paged_list import PagedList

T = TypeVar("T")


class TrackingError(RuntimeError):
    """The tracking store cannot be used (unreachable server, unwritable folder, ...)."""


class NoStore(TrackingError):
    """A read-only command was pointed at a SQLite store that does not exist: bad input, and nothing is created."""

    exit_code = 2


def home_dir() -> Path:
    """The folder of the embedded store, corpora, tokenizer and checkpoints."""
    return Path(os.environ.get(ENV_HOME, "transfer-laws-home")).resolve()


def embedded_tracking_uri(home: Path | None = None) -> str:
    """``sqlite:///<home>/mlflow.db``: the default store when nothing else is configured."""
    return f"sqlite:///{(home or home_dir()) / 'mlflow.db'}"


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """The tracking URI to use: explicit, else ``MLFLOW_TRACKING_URI``, else the embedded default."""
    if explicit:
        return explicit
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return embedded_tracking_uri()


def is_embedded(uri: str) -> bool:
    """True for a store this process writes directly (SQLite file), where no server runs hooks for us."""
    return uri.startswith("sqlite:")


def check_reachable(uri: str, timeout_s: float = 5.0, *, read_only: bool = False) -> None:
    """Fail early, in one clear line, when a tracking server does not answer. A SQLite store's folder is created
    unless ``read_only``: then a missing store file is ``NoStore`` (a read must not leave a fresh database)."""
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(_health_request(url), timeout=timeout_s) as response:
                if response.status != 200:
                    raise TrackingError(f"tracking server {uri} answered {response.status} on /health")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(f"tracking server {uri} is unreachable: {reason}") from None
    elif uri.startswith("sqlite:"):
        db_path = Path(uri.removeprefix("sqlite:///"))
        if read_only:
            if not db_path.is_file():
                raise NoStore(f"no MLflow store at {db_path} (nothing to read there; `transfer-laws demo` or a "
                              "training command creates one)")
            return
        try:
            db_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingError(f"cannot create the store folder {db_path.parent}: {exc.strerror}") from None
        if not db_path.is_file() or db_path.stat().st_size == 0:
            _create_store(uri, db_path)
    elif uri.startswith("file:") or "://" not in uri:
        raise TrackingError(
            f"tracking URI {uri!r} is a file store, which MLflow >= 3.13 refuses; "
            "use sqlite:///path/mlflow.db or a server"
        )


def _create_store(uri: str, db_path: Path) -> None:
    """Make a new SQLite store's tables, one process at a time: processes started together on a fresh store (the
    ranks of a torchrun job, parallel sweep workers) would each run MLflow's migrations on the same new file, and all
    but one fail ("duplicate column name", "table ... already exists"). The first to hold the lock migrates; the
    others find the tables made."""
    from filelock import FileLock
    from mlflow import MlflowClient

    with FileLock(f"{db_path}.lock"):
        MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments(max_results=1)


def _health_request(url: str) -> urllib.request.Request:
    """A GET of ``url``; credentials in it (``http://user:pw@host``, which MLflow's client accepts) become a Basic
    header, since urllib cannot open a URL that carries them."""
    import base64
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.username is None:
        return urllib.request.Request(url)
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    token = base64.b64encode(f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()).decode()
    plain = urlunsplit(parts._replace(netloc=netloc))
    return urllib.request.Request(plain, headers={"Authorization": f"Basic {token}"})


def use_tracking_uri(explicit: str | None = None, *, read_only: bool = False) -> str:
    """Resolve, check and activate the tracking (and registry) URI for this process; returns it. ``read_only``
    (``predict``, ``report``, ``lineage``): a missing SQLite store is an error, never created."""
    import mlflow

    uri = resolve_tracking_uri(explicit)
    check_reachable(uri, read_only=read_only)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def client_for(uri: str | None = None) -> MlflowClient:
    """The one way our code opens MLflow: a client whose tracking *and* registry store are ``uri`` (resolved as
    every command resolves it). A client left to MLflow's global registry URI can write a law's runs to one store
    and its versions to another."""
    from mlflow import MlflowClient

    resolved = resolve_tracking_uri(uri)
    return MlflowClient(tracking_uri=resolved, registry_uri=resolved)


def server_stores() -> tuple[str | None, str | None]:
    """(backend store, registry store) of the ``mlflow server`` this process runs inside, read from the variables
    the server sets for its workers; None where one is not set (the registry then lives in the backend), so
    (None, None) outside a server."""
    return os.environ.get(MLFLOW_ENV_SERVER_BACKEND) or None, os.environ.get(MLFLOW_ENV_SERVER_REGISTRY) or None


def server_client(uri: str | None = None) -> MlflowClient:
    """The client of code running inside the server (the law page): its backend and registry stores, which may
    differ; ``uri`` instead of the backend when given; the active tracking URI outside a server."""
    import mlflow
    from mlflow import MlflowClient

    backend, registry = server_stores()
    tracking = uri or backend or mlflow.get_tracking_uri()
    return MlflowClient(tracking_uri=tracking, registry_uri=registry or tracking)


def active_client() -> MlflowClient:
    """``client_for`` the store this process activated (``use_tracking_uri``): the commands' reads after it."""
    import mlflow

    return client_for(mlflow.get_tracking_uri())


def all_pages(fetch: Callable[[str | None], PagedList[T]]) -> list[T]:
    """Every item of a paginated MLflow search, in order: ``fetch(page_token)`` returns one page (``None`` asks
    for the first) and is called until a page carries no token. The one pagination loop of the project."""
    items: list[T] = []
    token: str | None = None
    while True:
        page = fetch(token)
        items.extend(page)
        token = page.token
        if not token:
            return items


_fluent_lock = threading.RLock()


@contextlib.contextmanager
def fluent_uri(uri: str) -> Iterator[None]:
    """MLflow's process-global tracking and registry URIs on ``uri`` for the block, one thread at a time, then
    exactly what they were before (unset stays unset, environment variables included).

    Needed wherever MLflow reads the global rather than the client it was called on: the fluent API
    (``start_run``, ``log_model``) and a SQL registry resolving a ``models:/m-...`` source, which looks the logged
    model up in the *global* tracking store. Restoring matters inside the server: a global URI left pointing at
    the server makes MLflow's own handlers call the one-worker server from its event loop, and it hangs."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    with _fluent_lock:
        saved_env = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
        saved_tracking, saved_registry = tracking_utils._tracking_uri, registry_utils._registry_uri
        tracking_utils.set_tracking_uri(uri)
        registry_utils.set_registry_uri(uri)
        try:
            yield
        finally:
            # also resets the tracer provider, as MLflow does; None (unset) is stored as given, though MLflow's
            # annotation says str | Path
            tracking_utils.set_tracking_uri(saved_tracking)  # type: ignore[arg-type]
            registry_utils._registry_uri = saved_registry
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def ensure_experiment(name: str = DEFAULT_EXPERIMENT, tracking_uri: str | None = None) -> str:
    """The id of experiment ``name``, created if missing; on the embedded store its artifacts go under the home.

    Our experiments open in MLflow's "Model training" view (tag ``mlflow.experimentKind``) with a description that
    says what they hold; both are set once, when missing, so a user's own description is never overwritten."""
    uri = resolve_tracking_uri(tracking_uri)
    client = client_for(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        _describe(client, experiment.experiment_id, name, experiment.tags or {})
        return experiment.experiment_id
    artifact_location = None
    if is_embedded(uri):
        store_dir = Path(uri.removeprefix("sqlite:///")).parent
        artifact_location = (store_dir / "artifacts" / name).as_uri()
    experiment_id = client.create_experiment(name, artifact_location=artifact_location)
    _describe(client, experiment_id, name, {})
    return experiment_id


def _describe(client: MlflowClient, experiment_id: str, name: str, tags: dict[str, str]) -> None:
    for key, value in experiment_tags(name, experiment_id).items():
        if not tags.get(key):
            client.set_experiment_tag(experiment_id, key, value)


def mark_registered(client: MlflowClient, model_id: str, name: str, version: int | str) -> None:
    """Record on a LoggedModel that registry version ``name/version`` holds it (tag ``mlflow.modelVersions``).

    An MLflow server does this itself when a version is created; a client writing the store directly (the embedded
    SQLite default) does not, and the model's page then says "Not registered" for a registered model."""
    import json

    model = client.get_logged_model(model_id)
    linked = model.tags.get(MLFLOW_MODEL_VERSIONS)
    entries = json.loads(linked) if linked else []
    if not any(str(e.get("name")) == name and str(e.get("version")) == str(version) for e in entries):
        entries.append({"name": name, "version": int(version)})  # a number, as the server writes it
        client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(entries)})
    _write_registered_meta(model.artifact_location, name, version)


def _write_registered_meta(artifact_location: str, name: str, version: int | str) -> None:
    """On a local artifact store, the ``registered_model_meta`` file MLflow writes into a model's own folder when
    ``mlflow.pyfunc.load_model("models:/name@alias")`` loads it in place, written now with the same bytes (the
    version as a number, as MLflow writes it for an alias): such a load then changes nothing in the store. (A load
    by ``models:/name/<number>`` rewrites it with the number quoted: MLflow's own write.)"""
    from urllib.parse import unquote, urlparse

    from mlflow.models.model import MLMODEL_FILE_NAME
    from mlflow.store.artifact.models_artifact_repo import REGISTERED_MODEL_META_FILE_NAME
    from mlflow.utils.yaml_utils import write_yaml

    if not artifact_location.startswith("file:"):
        return
    folder = Path(unquote(urlparse(artifact_location).path))
    if (folder / MLMODEL_FILE_NAME).is_file():
        write_yaml(str(folder), REGISTERED_MODEL_META_FILE_NAME,
                   {"model_name": name, "model_version": int(version)}, overwrite=True, ensure_yaml_extension=False)


def model_id_of(mv: ModelVersion) -> str:
    """The LoggedModel id of a model version (OSS leaves ``mv.model_id`` None; the source is ``models:/m-...``)."""
    if getattr(mv, "model_id", None):
        return str(mv.model_id)
    source = str(mv.source or "")
    if source.startswith("models:/m-"):
        return source.removeprefix("models:/").split("/")[0]
    raise CheckpointError(f"model version {mv.name}/{mv.version} is not a checkpoint (source {source!r})")


class CheckpointNotFound(CheckpointError):
    """A ``models:/`` URI names no version this registry holds: bad input (exit 2), the message lists what does."""

    exit_code = 2


def get_version(client: MlflowClient, uri: str) -> ModelVersion:
    """The ModelVersion behind ``models:/name/version`` or ``models:/name@alias``; ``CheckpointNotFound`` naming the
    aliases and versions that exist when there is none."""
    from mlflow.exceptions import MlflowException

    name, version, alias = parse_model_uri(uri)
    try:
        if version:
            return client.get_model_version(name, version)
        if alias:
            return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        raise CheckpointNotFound(f"{uri} names no registered model version in this store; "
                                 f"{what_exists(client, name)}") from None
    raise CheckpointError(f"{uri!r} names neither a version nor an alias")


def what_exists(client: MlflowClient, name: str) -> str:
    """'pretrained-text has aliases @demo-2x32 (v1), ... and versions 1-3', or the registered models there are."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException:
        names = sorted(m.name for m in client.search_registered_models(max_results=100)
                       if not m.name.startswith(LAW_MODEL_PREFIX))
        return (f"no registered model {name!r} (checkpoint models here: {', '.join(names)})" if names
                else f"no registered model {name!r}, and no checkpoint is registered yet")
    aliases = dict(getattr(model, "aliases", None) or {})
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'", max_results=1000))
    listed = ", ".join(f"@{a} (v{v})" for a, v in sorted(aliases.items())) or "none"
    span = (f"{versions[0]}" if len(versions) == 1 else f"{versions[0]}-{versions[-1]}") if versions else "none"
    return f"{name} has aliases {listed} and versions {span}"
