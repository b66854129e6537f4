"""TransferRunContextProvider: the ``mlflow.run_context_provider`` entry point (sweep, git, CI tags).

MLflow loads it while ``import mlflow`` runs, so this module imports nothing from MLflow at the top. It is off
unless its environment variables are set, and it never fails a run: an error becomes a warning and a
``transfer.plugin_error`` tag.

- ``TRANSFER_LAWS_SWEEP_ID`` -> ``transfer.sweep``; ``TRANSFER_LAWS_TRIAL`` -> ``transfer.trial``.
- ``TRANSFER_LAWS_GIT=1`` (the current directory's checkout) or ``TRANSFER_LAWS_GIT=<path>`` ->
  ``transfer.git_commit`` and ``transfer.git_dirty`` (``true``/``false``).
- ``CI=true`` with ``GITHUB_RUN_ID`` or ``CI_JOB_ID`` -> ``transfer.ci_job``.
"""

from __future__ import annotations

import os
import subprocess
import warnings

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

CI_JOB_VARS = ("GITHUB_RUN_ID", "CI_JOB_ID")
_OFF = {"", "0", "false", "no", "off"}


class TransferRunContextProvider:
    """MLflow run context provider (duck-typed: MLflow calls ``in_context()`` and ``tags()``)."""

    def in_context(self) -> bool:
        return any(os.environ.get(v) for v in (ENV_SWEEP, ENV_TRIAL)) or _git_target() is not None or bool(_ci_job())

    def tags(self) -> dict[str, str]:
        try:
            return collect_tags()
        except Exception as exc:  # a tagging problem must never fail the user's run
            message = f"{type(exc).__name__}: {exc}"[:500]
            warnings.warn(f"transfer-laws run context provider failed: {message}", stacklevel=2)
            return {TAG_PLUGIN_ERROR: message}


def collect_tags() -> dict[str, str]:
    """The tags the environment asks for; raises on a broken request (e.g. TRANSFER_LAWS_GIT not a checkout)."""
    tags: dict[str, str] = {}
    if os.environ.get(ENV_SWEEP):
        tags[TAG_SWEEP] = os.environ[ENV_SWEEP]
    if os.environ.get(ENV_TRIAL):
        tags[TAG_TRIAL] = os.environ[ENV_TRIAL]
    checkout = _git_target()
    if checkout is not None:
        commit, dirty = git_state(checkout)
        tags[TAG_GIT_COMMIT] = commit
        tags[TAG_GIT_DIRTY] = "true" if dirty else "false"
    job = _ci_job()
    if job:
        tags[TAG_CI_JOB] = job
    return tags


def git_state(checkout: str) -> tuple[str, bool]:
    """(HEAD commit, whether tracked files have uncommitted changes) of a git checkout."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", checkout, *args], capture_output=True, text=True, timeout=10)
        if done.returncode:
            raise RuntimeError(f"git {' '.join(args)} in {checkout!r} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    return git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "--untracked-files=no"))


def _git_target() -> str | None:
    value = os.environ.get(ENV_GIT, "").strip()
    if value.lower() in _OFF:
        return None
    return os.getcwd() if value.lower() in {"1", "true", "yes", "on"} else value


def _ci_job() -> str | None:
    if os.environ.get("CI", "").lower() != "true":
        return None
    return next((os.environ[v] for v in CI_JOB_VARS if os.environ.get(v)), None)
