"""One refit at a time per law, across processes and server workers.

On a server store the lock is a PostgreSQL session advisory lock (released by the database when the holder's
connection dies, so a killed refit never leaves a stale lock). The database is ``TRANSFER_LAWS_LOCK_DB`` when
set, else the tracking URI itself when it is a PostgreSQL URI, else the backend store of the ``mlflow server``
this code runs inside. Next to a SQLite store the lock is a file lock beside the database file. Anything else
(a remote server with no lock database configured) gets a lock within this process only.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_DB_ENV = "TRANSFER_LAWS_LOCK_DB"
SERVER_BACKEND_ENV = "_MLFLOW_SERVER_FILE_STORE"
"""Set by ``mlflow server`` to its ``--backend-store-uri`` in every worker."""

_local_locks: dict[str, threading.Lock] = {}
_local_guard = threading.Lock()


class LockTimeout(TimeoutError):
    """Another refit of the same law held the lock for longer than the timeout."""


def lock_key(law: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``law``."""
    digest = hashlib.sha256(f"transfer-laws-refit:{law}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_database(tracking_uri: str) -> str | None:
    """The PostgreSQL URI to take advisory locks in, or None."""
    explicit = os.environ.get(LOCK_DB_ENV)
    if explicit:
        return explicit
    if tracking_uri.startswith("postgresql"):
        return tracking_uri
    backend = os.environ.get(SERVER_BACKEND_ENV, "")
    if tracking_uri.startswith(("http://", "https://")) and backend.startswith("postgresql"):
        return backend
    return None


def _libpq_uri(uri: str) -> str:
    scheme, sep, rest = uri.partition("://")
    return f"postgresql://{rest}" if sep and scheme.startswith("postgresql") else uri


@contextmanager
def _advisory_lock(db_uri: str, law: str, timeout_s: float) -> Iterator[None]:
    import psycopg2

    conn = psycopg2.connect(_libpq_uri(db_uri))
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            # lock_timeout bounds the wait; the lock itself lives as long as this connection.
            cur.execute("SET lock_timeout = %s", (f"{int(timeout_s * 1000)}ms",))
            try:
                cur.execute("SELECT pg_advisory_lock(%s)", (lock_key(law),))
            except psycopg2.errors.LockNotAvailable:
                raise LockTimeout(f"refit of {law} still locked after {timeout_s:.0f} s") from None
        try:
            yield
        finally:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (lock_key(law),))
    finally:
        conn.close()


@contextmanager
def _file_lock(path: Path, law: str, timeout_s: float) -> Iterator[None]:
    import filelock

    try:
        with filelock.FileLock(str(path), timeout=timeout_s):
            yield
    except filelock.Timeout:
        raise LockTimeout(f"refit of {law} still locked ({path}) after {timeout_s:.0f} s") from None


@contextmanager
def _process_lock(law: str, timeout_s: float) -> Iterator[None]:
    with _local_guard:
        lock = _local_locks.setdefault(law, threading.Lock())
    if not lock.acquire(timeout=timeout_s):
        raise LockTimeout(f"refit of {law} still locked in this process after {timeout_s:.0f} s")
    try:
        yield
    finally:
        lock.release()


@contextmanager
def law_lock(law: str, tracking_uri: str, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold the refit lock of ``law`` for the store behind ``tracking_uri``."""
    db_uri = lock_database(tracking_uri)
    if db_uri is not None:
        with _process_lock(law, timeout_s), _advisory_lock(db_uri, law, timeout_s):
            yield
    elif tracking_uri.startswith("sqlite:"):
        db_file = Path(tracking_uri.removeprefix("sqlite:///"))
        with _process_lock(law, timeout_s), _file_lock(db_file.parent / f".refit-{law}.lock", law, timeout_s):
            yield
    else:
        with _process_lock(law, timeout_s):
            yield
