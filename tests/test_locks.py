"""The refit locks, a contract over every store: the law lock each store gets and what it keeps out, and the
registry-side mutex (exclusive, released, broken when its holder died, retaken in MLflow's own race)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from _stores import Store

from transfer_laws.registry.locks import (
    LOCK_KIND_DATABASE,
    LOCK_KIND_FILE,
    LOCK_KIND_PROCESS,
    LockTimeout,
    law_lock,
    lock_kind,
    registry_lock,
)
from transfer_laws.registry.schema import ENV_LOCK_DB, LOCK_TAG_OWNER, REGISTRY_LOCK_PREFIX

EXPECTED_KIND = {"sqlite": LOCK_KIND_FILE, "postgresql": LOCK_KIND_DATABASE, "server": LOCK_KIND_PROCESS}
"""A refit against a server with no lock database configured holds a lock within its process only (the registry
lock keeps its versions sound)."""

HOLD = ("import sys; from transfer_laws.registry.locks import law_lock\n"
        "with law_lock(sys.argv[1], sys.argv[2]):\n    print('held', flush=True); sys.stdin.read()")
"""A process that holds ``law_lock(<law>, <uri>)`` until its stdin closes (or it is killed)."""


def _holder(law: str, uri: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != ENV_LOCK_DB}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, law, uri], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_the_law_lock_keeps_other_processes_out_and_dies_with_its_holder(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_LOCK_DB, raising=False)
    law, other = store.law(), store.law()
    assert lock_kind(store.uri) == EXPECTED_KIND[store.kind]
    holder = _holder(law, store.uri)
    try:
        with law_lock(other, store.uri, timeout_s=5):
            pass  # another law is never held up
        if lock_kind(store.uri) == LOCK_KIND_PROCESS:
            with law_lock(law, store.uri, timeout_s=1):
                pass  # nothing shared between processes: the registry lock is what guards versions
        else:
            with pytest.raises(LockTimeout), law_lock(law, store.uri, timeout_s=1):
                pass
        holder.kill()  # a refit SIGKILLed while holding the lock: the database or the OS releases it
        holder.wait(30)
        with law_lock(law, store.uri, timeout_s=10):
            pass
    finally:
        holder.kill()
        holder.wait(30)


def test_the_registry_lock_is_exclusive_and_released(store: Store) -> None:
    client, law = store.client(), store.law()
    name = f"{REGISTRY_LOCK_PREFIX}{law}"
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with registry_lock(store.client(), law, lease_s=1.0):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(30)
        with pytest.raises(LockTimeout), registry_lock(client, law, timeout_s=0, lease_s=1.0):
            pass  # its holder renews it, so two leases go by without it being broken
    finally:
        release.set()
        thread.join(30)
    assert not client.search_registered_models(f"name = '{name}'"), "not released on exit"
    with registry_lock(client, law, timeout_s=5, lease_s=1.0):
        assert client.get_registered_model(name).tags.get(LOCK_TAG_OWNER)


def test_a_dead_holders_registry_lock_is_broken_after_one_lease(store: Store) -> None:
    client, law = store.client(), store.law()
    name = f"{REGISTRY_LOCK_PREFIX}{law}"
    client.create_registered_model(name, tags={LOCK_TAG_OWNER: "a-host-long-gone:1:1"})  # what a SIGKILL leaves
    with registry_lock(client, law, timeout_s=10, lease_s=1.0):
        assert client.get_registered_model(name).tags[LOCK_TAG_OWNER] != "a-host-long-gone:1:1"


def test_the_registry_lock_is_retaken_when_its_holder_releases_inside_mlflows_create(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's SQL store answers a create that lost the race by looking the holder up; when the holder releases in
    between, that look-up fails with RESOURCE_DOES_NOT_EXIST. The waiter must read it as "try again" (it failed a
    racing refit on the server stack), so the real store is made to release at exactly that moment."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    if not store.local:
        pytest.skip("the race is staged inside this process's SQL store; the server's store is another process")
    client, law = store.client(), store.law()
    name = f"{REGISTRY_LOCK_PREFIX}{law}"
    client.create_registered_model(name)  # another refit holds the lock
    look_up = SqlAlchemyStore.get_registered_model
    released: list[str] = []

    def holder_releases_first(sql_store: SqlAlchemyStore, model_name: str) -> object:
        if model_name == name and not released:
            released.append(model_name)
            client.delete_registered_model(model_name)
        return look_up(sql_store, model_name)

    monkeypatch.setattr(SqlAlchemyStore, "get_registered_model", holder_releases_first)
    with registry_lock(client, law, timeout_s=20):
        assert released == [name], "the race this test stages did not happen"
        assert client.get_registered_model(name).tags.get(LOCK_TAG_OWNER), "the lock is ours now"
    with pytest.raises(MlflowException, match="not found"):  # released on exit
        client.get_registered_model(name)
