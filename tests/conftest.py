"""Shared fixtures: an embedded SQLite store per test, every kind of store for contract tests, and the real server
stack started by .ci/run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from _stores import STORE_KINDS, Store, open_store

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass(frozen=True)
class ServerStack:
    """The services .ci/run started (see .ci/services.sh)."""

    tracking_uri: str
    """``http://127.0.0.1:PORT`` of ``mlflow server --app-name transfer-laws`` on PostgreSQL + S3."""
    pg_uri: str
    """A scratch PostgreSQL database (``postgresql+psycopg2://...``) on the same server, for Optuna and locks."""
    s3_endpoint: str
    """The S3 endpoint over HTTP (moto's server mode)."""
    bucket: str
    """The bucket the MLflow server stores artifacts in."""
    server_log: str | None

    def s3_client(self):  # boto3 client
        import boto3

        return boto3.client("s3", endpoint_url=self.s3_endpoint)


@pytest.fixture(scope="session")
def server_stack() -> ServerStack:
    uri = os.environ.get("TL_TEST_SERVER_URI")
    if not uri:
        if os.environ.get("TL_REQUIRE_SERVICES") == "1":
            pytest.fail("TL_REQUIRE_SERVICES=1 but the server stack is not running (see .ci/services.sh)")
        pytest.skip("server stack not running: run the suite with `bash .ci/run`")
    return ServerStack(
        tracking_uri=uri,
        pg_uri=os.environ["TL_TEST_PG_URI"],
        s3_endpoint=os.environ["MLFLOW_S3_ENDPOINT_URL"],
        bucket=os.environ["TL_TEST_S3_BUCKET"],
        server_log=os.environ.get("TL_MLFLOW_LOG"),
    )


@pytest.fixture
def sqlite_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh embedded store (SQLite file + local artifact folder) as the process's tracking URI."""
    home = tmp_path / "tl-home"
    home.mkdir()
    uri = f"sqlite:///{home / 'mlflow.db'}"
    monkeypatch.setenv("TRANSFER_LAWS_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


@pytest.fixture(scope="module", params=[pytest.param(kind, marks=() if kind == "sqlite" else pytest.mark.server)
                                        for kind in STORE_KINDS])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """Each kind of store in turn (``tests/_stores.py``), one per test module: a test taking it is a contract
    test, run on SQLite, PostgreSQL and a real server over HTTP (the last two skip without the server stack)."""
    with open_store(request.param, tmp_path_factory.mktemp(f"store-{request.param}")) as opened:
        yield opened


@dataclass(frozen=True)
class DemoStore:
    """The embedded store `transfer-laws demo --quick` leaves behind, built once per session."""

    home: Path
    """Its TRANSFER_LAWS_HOME (``mlflow.db``, artifacts, corpora, tokenizer, checkpoints)."""
    uri: str
    """``sqlite:///<home>/mlflow.db``."""
    output: str
    """What the demo printed."""


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    """`transfer-laws demo --quick` into a fresh home, as the README's newcomer runs it (real corpora, tokenizer,
    training and refits; a few minutes). Tests that only read it share it; a test that writes to it says so.

    ``TL_TEST_DEMO_HOME`` names a home such a demo already filled (its printout in ``demo.log`` there), for working
    on these tests without waiting for the demo again; the tests may write to it."""
    import contextlib
    import io

    from transfer_laws.scripts import cli

    reuse = os.environ.get("TL_TEST_DEMO_HOME")
    if reuse:
        home = Path(reuse).resolve()
        log = home / "demo.log"
        return DemoStore(home=home, uri=f"sqlite:///{home / 'mlflow.db'}",
                         output=log.read_text() if log.is_file() else "")
    home = tmp_path_factory.mktemp("demo-home")
    saved = {key: os.environ.get(key) for key in ("TRANSFER_LAWS_HOME", "MLFLOW_TRACKING_URI")}
    os.environ["TRANSFER_LAWS_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            code = cli.main(["demo", "--quick"])
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        import mlflow

        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    assert code == 0, out.getvalue()[-3000:]
    return DemoStore(home=home, uri=f"sqlite:///{home / 'mlflow.db'}", output=out.getvalue())
