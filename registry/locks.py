"""One refit at a time per law, across processes and server workers, and the registry-side guard of each version.

``law_lock`` serialises whole refits. On a server store it is a database session lock (PostgreSQL advisory lock or
MySQL ``GET_LOCK``), released by the database when the holder's connection dies, so a killed refit never leaves a
stale lock. The database is ``TRANSFER_LAWS_LOCK_DB`` when set, else the tracking URI itself when it is a
PostgreSQL/MySQL URI, else the backend store of the ``mlflow server`` this code runs inside. Next to a SQLite store
the lock is a file lock beside the database file. Anything else (a CI job refitting through a remote server with no
lock database configured) gets a lock within this process only.

``registry_lock`` is what makes that last case safe anyway: a short mutex held in the model registry itself (a
registered model named ``transfer-laws-lock.<law>``, whose creation is atomic in every MLflow store), taken only
around "re-read the inputs, compare with ``@latest``, create the version". Every refitter takes it, whatever
``law_lock`` it holds, so a version is never created from inputs older than what the registry shows at that moment.
The holder keeps a lease on it: a thread bumps the lock's ``transfer.lock_renewed`` tag every
``REGISTRY_LOCK_LEASE_S / 4``. A holder killed inside the window stops renewing, and a waiter that sees the tag
unchanged for a whole lease (by its own monotonic clock, so no two clocks are compared) breaks the lock: a dead
holder delays the next refit by about ``REGISTRY_LOCK_LEASE_S``, and waiters wait several leases before giving up.
A live holder that cannot reach the registry for a whole lease loses the lock (it then neither renews nor deletes a
lock it no longer owns).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from transfer_laws.registry.schema import (
    ENV_LOCK_DB,
    LOCK_TAG_OWNER,
    LOCK_TAG_RENEWED,
    REGISTRY_LOCK_PREFIX,
)
from transfer_laws.registry.tracking import server_stores

if TYPE_CHECKING:
    from mlflow import MlflowClient

REGISTRY_LOCK_LEASE_S = 10.0
"""A registry lock whose holder has not renewed it for this long belongs to a dead holder and is broken."""
REGISTRY_LOCK_WAIT_S = 60.0
"""How long a refit waits for a law's registry lock by default (several leases: a stale lock is broken first)."""
LOCK_KIND_DATABASE, LOCK_KIND_FILE, LOCK_KIND_PROCESS = "database", "file", "process"
_DB_SCHEMES = ("postgresql", "mysql")

log = logging.getLogger(__name__)
_local_locks: dict[str, threading.Lock] = {}
_local_guard = threading.Lock()


class LockTimeout(TimeoutError):
    """Another refit of the same law held the lock for longer than the timeout."""


def lock_key(law: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``law``."""
    digest = hashlib.sha256(f"transfer-laws-refit:{law}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_database(tracking_uri: str) -> str | None:
    """The PostgreSQL or MySQL URI to take the law lock in, or None."""
    explicit = os.environ.get(ENV_LOCK_DB)
    if explicit:
        return explicit
    if tracking_uri.startswith(_DB_SCHEMES):
        return tracking_uri
    backend = server_stores()[0] or ""
    if tracking_uri.startswith(("http://", "https://")) and backend.startswith(_DB_SCHEMES):
        return backend
    return None


def lock_kind(tracking_uri: str) -> str:
    """Which ``law_lock`` a refit against ``tracking_uri`` holds: ``database``, ``file`` or ``process``."""
    if lock_database(tracking_uri) is not None:
        return LOCK_KIND_DATABASE
    return LOCK_KIND_FILE if tracking_uri.startswith("sqlite:") else LOCK_KIND_PROCESS


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
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock(%s)", (lock_key(law),))
            except psycopg2.Error:  # the connection died (a database restart): the lock died with it
                log.warning("advisory lock of %s: connection lost before unlock (released with it)", law)
    finally:
        conn.close()


@contextmanager
def _mysql_lock(db_uri: str, law: str, timeout_s: float) -> Iterator[None]:
    """MySQL's named lock, released by the server when the holder's connection dies (like an advisory lock)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(db_uri, poolclass=sqlalchemy.pool.NullPool)
    name = f"transfer-laws-refit:{lock_key(law)}"  # GET_LOCK names are limited to 64 characters
    try:
        with engine.connect() as conn:
            got = conn.execute(sqlalchemy.text("SELECT GET_LOCK(:n, :t)"), {"n": name, "t": int(timeout_s)}).scalar()
            if got != 1:
                raise LockTimeout(f"refit of {law} still locked after {timeout_s:.0f} s")
            try:
                yield
            finally:
                try:
                    conn.execute(sqlalchemy.text("SELECT RELEASE_LOCK(:n)"), {"n": name})
                except sqlalchemy.exc.DBAPIError:  # the connection died: the named lock died with it
                    log.warning("named lock of %s: connection lost before release (released with it)", law)
    finally:
        engine.dispose()


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
    """Hold the refit lock of ``law`` for the store behind ``tracking_uri`` (which kind: ``lock_kind``)."""
    db_uri = lock_database(tracking_uri)
    if db_uri is not None:
        database_lock = _mysql_lock if db_uri.startswith("mysql") else _advisory_lock
        with _process_lock(law, timeout_s), database_lock(db_uri, law, timeout_s):
            yield
    elif tracking_uri.startswith("sqlite:"):
        db_file = Path(tracking_uri.removeprefix("sqlite:///"))
        with _process_lock(law, timeout_s), _file_lock(db_file.parent / f".refit-{law}.lock", law, timeout_s):
            yield
    else:
        with _process_lock(law, timeout_s):
            yield


class Lease:
    """Calls ``renew()`` every ``every_s`` on a daemon thread until stopped: how a live holder says it is alive."""

    def __init__(self, renew: Callable[[], object], every_s: float, what: str) -> None:
        self._renew, self._every_s, self._what = renew, every_s, what
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease {what}", daemon=True)

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self._every_s + 30)

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self._renew()
            except Exception as exc:  # the next beat retries; a lease that lapses is broken by a waiter
                log.warning("could not renew the lease of %s: %s", self._what, exc)


class _Staleness:
    """A waiter's view of a held registry lock: how long its holder's lease marker has stood still."""

    def __init__(self) -> None:
        self.marker: tuple[str, str] | None = None
        self.since = time.monotonic()

    def stale(self, tags: dict[str, str], lease_s: float) -> bool:
        marker = (tags.get(LOCK_TAG_OWNER, ""), tags.get(LOCK_TAG_RENEWED, ""))
        if marker != self.marker:
            self.marker, self.since = marker, time.monotonic()
        return time.monotonic() - self.since > lease_s


def _break_if_stale(client: MlflowClient, name: str, seen: _Staleness, lease_s: float) -> None:
    from mlflow.exceptions import MlflowException

    try:
        held = client.get_registered_model(name)
    except MlflowException:
        return  # released meanwhile
    if seen.stale(dict(held.tags or {}), lease_s):
        log.warning("breaking registry lock %s: its holder %s has not renewed it for %.0f s", name,
                    (held.tags or {}).get(LOCK_TAG_OWNER, "?"), lease_s)
        try:
            client.delete_registered_model(name)
        except MlflowException:
            pass  # another waiter broke it first, or we may not: keep waiting until the timeout says so


def _owned_by(client: MlflowClient, name: str, owner: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        return (client.get_registered_model(name).tags or {}).get(LOCK_TAG_OWNER) == owner
    except MlflowException:
        return False


_CONTENDED = ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST")
_LOCK_NOTE = "Held for a moment while a transfer-law version is created (transfer_laws.registry.locks)."


@contextmanager
def registry_lock(client: MlflowClient, law: str, timeout_s: float = REGISTRY_LOCK_WAIT_S,
                  lease_s: float = REGISTRY_LOCK_LEASE_S) -> Iterator[None]:
    """Hold the registry-side mutex of ``law`` (see the module docstring); ``LockTimeout`` after ``timeout_s``."""
    from mlflow.exceptions import MlflowException

    name = f"{REGISTRY_LOCK_PREFIX}{law}"
    owner = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
    deadline, pause, seen = time.monotonic() + max(timeout_s, 2 * lease_s), 0.02, _Staleness()
    while True:
        try:
            client.create_registered_model(name, tags={LOCK_TAG_OWNER: owner, LOCK_TAG_RENEWED: "0"},
                                           description=_LOCK_NOTE)
            break
        except MlflowException as exc:
            # Held by another refit; or released between the store's failed insert and its look-up of the holder
            # (MLflow's SQL store then answers RESOURCE_DOES_NOT_EXIST to a create): either way, try again.
            if exc.error_code not in _CONTENDED:
                raise
        _break_if_stale(client, name, seen, lease_s)
        if time.monotonic() > deadline:
            raise LockTimeout(f"registry lock {name} still held after {timeout_s:.0f} s") from None
        time.sleep(pause)
        pause = min(pause * 2, 0.5)
    beats = iter(range(1, 1 << 62))

    def renew() -> None:
        client.set_registered_model_tag(name, LOCK_TAG_RENEWED, str(next(beats)))

    try:
        with Lease(renew, lease_s / 4, name):
            yield
    finally:
        try:
            if _owned_by(client, name, owner):  # never delete a lock a waiter broke and someone else now holds
                client.delete_registered_model(name)
        except MlflowException:  # broken as stale by another refit: nothing left to release
            pass
