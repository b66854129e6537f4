"""Every kind of store the project runs on, for contract tests (like optuna's storage tests): an embedded SQLite
file, PostgreSQL (``postgresql+psycopg2://``) and a real ``mlflow server`` over HTTP on PostgreSQL + S3 (started by
``.ci/services.sh``). A test that takes the ``store`` fixture (``conftest.py``) runs once per kind.

Clean-up is the store's own: the SQLite file and a PostgreSQL database are fresh per test module (the database a
copy of one migrated once per session), and the shared server's data stays for the whole session. So a test never
assumes an empty store: it takes a law of its own (``Store.law()``: a fresh source and target) and experiments of
its own (``Store.experiment()``).
"""

from __future__ import annotations

import atexit
import functools
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from mlflow import MlflowClient

from transfer_laws.registry.schema import REFIT_EXPERIMENT

STORE_KINDS = ("sqlite", "postgresql", "server")
"""The ``store`` fixture's parameters, in the order tests run."""


@dataclass(frozen=True)
class Store:
    """One store under test."""

    kind: str
    """``sqlite``, ``postgresql`` or ``server``."""
    uri: str
    """The tracking and registry URI the code under test is given."""
    writer_uri: str
    """Where tests land runs: the same store, written past the server's run-landed hook (its backend database), so
    only the code under test refits."""
    folder: Path
    """A folder of this module's own, for the artifacts of local stores."""

    @property
    def local(self) -> bool:
        """Whether artifacts are files on this machine (SQLite, PostgreSQL) rather than behind the server (S3)."""
        return self.kind != "server"

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def writer(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.writer_uri, registry_uri=self.writer_uri)

    def experiment(self, label: str = "runs") -> str:
        """A new experiment of the calling test's own; its artifacts in this module's folder on a local store."""
        name = f"{label}-{uuid.uuid4().hex[:8]}"
        location = (self.folder / name).as_uri() if self.local else None
        return self.client().create_experiment(name, artifact_location=location)

    @staticmethod
    def law(target: str | None = None) -> str:
        """A law no other test uses: a fresh source and (unless given) a fresh target."""
        return f"s{uuid.uuid4().hex[:8]}-to-{target or 't' + uuid.uuid4().hex[:8]}"


def _skip_without_stack(kind: str) -> None:
    if not os.environ.get("TL_TEST_SERVER_URI"):
        if os.environ.get("TL_REQUIRE_SERVICES") == "1":
            pytest.fail("TL_REQUIRE_SERVICES=1 but the server stack is not running (see .ci/services.sh)")
        pytest.skip(f"{kind} store: the server stack is not running (`bash .ci/run` starts it)")


def _with_database(uri: str, database: str) -> str:
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _admin(sql: str) -> None:
    """Run ``sql`` on the test PostgreSQL server outside a transaction (CREATE/DROP DATABASE)."""
    import psycopg2

    parts = urlsplit(os.environ["TL_TEST_PG_URI"])
    conn = psycopg2.connect(host=parts.hostname, port=parts.port, user=parts.username, dbname="postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(sql)
    finally:
        conn.close()


def _drop_if_reachable(database: str) -> None:
    try:
        _admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    except Exception:  # the server stack already stopped: the database went with it
        pass


@functools.cache
def _migrated_template() -> str:
    """A database holding MLflow's empty schema, migrated once per session in a process of its own (a template must
    have no open connection when it is copied), and dropped when the session ends."""
    template = f"tl_template_{os.getpid()}"
    _admin(f"DROP DATABASE IF EXISTS {template} WITH (FORCE)")
    _admin(f"CREATE DATABASE {template}")
    atexit.register(_drop_if_reachable, template)
    uri = _with_database(os.environ["TL_TEST_PG_URI"], template)
    subprocess.run([sys.executable, "-c", "import sys, mlflow; mlflow.MlflowClient(sys.argv[1], sys.argv[1])"
                    ".search_registered_models(); mlflow.MlflowClient(sys.argv[1]).search_experiments()", uri],
                   check=True, capture_output=True, timeout=300)
    return template


@contextmanager
def open_store(kind: str, folder: Path) -> Iterator[Store]:
    """A store of ``kind`` for one test module, cleaned up after it."""
    if kind == "sqlite":
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        yield _prepared(Store(kind, uri, uri, folder))
        return
    _skip_without_stack(kind)
    if kind == "server":
        yield Store(kind, os.environ["TL_TEST_SERVER_URI"], os.environ["TL_MLFLOW_BACKEND_URI"], folder)
        return
    database = f"tl_{uuid.uuid4().hex[:12]}"
    _admin(f"CREATE DATABASE {database} TEMPLATE {_migrated_template()}")
    uri = _with_database(os.environ["TL_TEST_PG_URI"], database)
    try:
        yield _prepared(Store(kind, uri, uri, folder))
    finally:
        _admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def _prepared(store: Store) -> Store:
    """A local store's refit experiment made in its folder (created by the refit, it would land in the working
    directory's ``mlruns``: MLflow's default artifact root for a database URI)."""
    store.client().create_experiment(REFIT_EXPERIMENT, artifact_location=(store.folder / "refits").as_uri())
    return store
