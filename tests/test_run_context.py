"""The run context provider, discovered through MLflow's real entry points, tagging runs from the environment."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from transfer_laws.plugin.run_context import TransferRunContextProvider
from transfer_laws.registry.schema import (
    ENV_GIT,
    ENV_SWEEP,
    ENV_TRIAL,
    TAG_CI_JOB,
    TAG_GIT_COMMIT,
    TAG_GIT_DIRTY,
    TAG_PLUGIN_ERROR,
    TAG_SWEEP,
    TAG_TRIAL,
)

ALL_VARS = (ENV_SWEEP, ENV_TRIAL, ENV_GIT, "CI", "GITHUB_RUN_ID", "CI_JOB_ID")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in ALL_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def _git_repo(folder: Path) -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    folder.mkdir()
    git("init", "-q")
    (folder / "a.txt").write_text("one\n")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "first")
    return git("rev-parse", "HEAD")


def test_provider_is_registered_through_entry_points() -> None:
    from mlflow.tracking.context.registry import _run_context_provider_registry

    assert any(isinstance(p, TransferRunContextProvider) for p in _run_context_provider_registry)


def test_off_without_env(clean_env: pytest.MonkeyPatch, sqlite_uri: str) -> None:
    import mlflow

    assert not TransferRunContextProvider().in_context()
    with mlflow.start_run() as run:
        pass
    tags = mlflow.get_run(run.info.run_id).data.tags
    assert not any(key.startswith("transfer.") for key in tags)


def test_tags_on_a_fluent_run(clean_env: pytest.MonkeyPatch, sqlite_uri: str, tmp_path: Path) -> None:
    import mlflow

    commit = _git_repo(tmp_path / "repo")
    clean_env.setenv(ENV_SWEEP, "sweep-7")
    clean_env.setenv(ENV_TRIAL, "3")
    clean_env.setenv(ENV_GIT, str(tmp_path / "repo"))
    clean_env.setenv("CI", "true")
    clean_env.setenv("GITHUB_RUN_ID", "987654")
    with mlflow.start_run() as run:
        pass
    tags = mlflow.get_run(run.info.run_id).data.tags
    assert (tags[TAG_SWEEP], tags[TAG_TRIAL], tags[TAG_CI_JOB]) == ("sweep-7", "3", "987654")
    assert (tags[TAG_GIT_COMMIT], tags[TAG_GIT_DIRTY]) == (commit, "false")

    (tmp_path / "repo" / "a.txt").write_text("two\n")
    with mlflow.start_run() as dirty:
        pass
    assert mlflow.get_run(dirty.info.run_id).data.tags[TAG_GIT_DIRTY] == "true"


def test_ci_job_only_when_ci_is_true(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CI_JOB_ID", "55")
    assert not TransferRunContextProvider().in_context()
    clean_env.setenv("CI", "true")
    assert TransferRunContextProvider().tags() == {TAG_CI_JOB: "55"}


def test_broken_request_never_fails_the_run(clean_env: pytest.MonkeyPatch, sqlite_uri: str, tmp_path: Path) -> None:
    import mlflow

    clean_env.setenv(ENV_GIT, str(tmp_path / "not-a-checkout"))
    (tmp_path / "not-a-checkout").mkdir()
    with pytest.warns(UserWarning, match="run context provider failed"), mlflow.start_run() as run:
        mlflow.log_param("x", 1)
    finished = mlflow.get_run(run.info.run_id)
    assert finished.info.status == "FINISHED"
    assert "git rev-parse HEAD" in finished.data.tags[TAG_PLUGIN_ERROR]


def test_every_schema_constant_is_documented() -> None:
    from transfer_laws.registry import schema

    doc = (Path(__file__).parent.parent / "docs" / "run-schema.md").read_text()
    constants = {k: v for k, v in vars(schema).items() if k.isupper() and not k.startswith("_")}
    assert constants
    missing = [k for k, v in constants.items() if f"| `{k}` | `{v}` |" not in doc]
    assert not missing, f"docs/run-schema.md lacks (or has a different value for) {missing}"
