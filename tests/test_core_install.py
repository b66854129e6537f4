"""The core distribution (``pip install mlflow-transfer-laws``, no ``[train]`` extra) refits, predicts and serves
without torch: installed from this checkout into a fresh venv, run against a store with runs.

What the server image, the CI refit workflow and plugin-only users install; training commands say which extra
they need instead of failing on an import.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from _servers import free_port, mlflow_server
from law_runs import LAW, land_finetunes, land_scratch_runs
from mlflow import MlflowClient

from transfer_laws.registry.schema import DEFAULT_EXPERIMENT, law_model_name

pytestmark = pytest.mark.slow  # builds a venv (~1 minute from pip's cache) and starts a server

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("core")
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # A copy of the sources, so the build writes nothing into the checkout; not editable: what users get.
    skip = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "mlruns",
                                  "transfer-laws-home", "test-artifacts")
    sources = shutil.copytree(ROOT, folder / "src", ignore=skip)
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(sources)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("core-store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)  # not a registry URI an earlier test left set in this process
    experiment = client.create_experiment(DEFAULT_EXPERIMENT, artifact_location=str(folder / "artifacts"))
    land_scratch_runs(client, experiment)
    land_finetunes(client, experiment, 12)
    return uri


def _env() -> dict[str, str]:
    # mlflow.set_registry_uri() in earlier in-process tests exports MLFLOW_REGISTRY_URI: never pass it on.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_TRACKING_", "MLFLOW_REGISTRY_URI", "VIRTUAL_ENV"))}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return env


def _cli(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "transfer-laws"), *args], capture_output=True, text=True,
                          timeout=300, env=_env(), cwd=cwd)


def test_core_has_no_torch(core_venv: Path) -> None:
    probe = "import importlib.util as u; print([m for m in ('torch', 'lightning', 'optuna') if u.find_spec(m)])"
    done = subprocess.run([str(core_venv / "bin" / "python"), "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_core_refits_predicts_and_reports(core_venv: Path, store: str, tmp_path: Path) -> None:
    refit = _cli(core_venv, "refit", "--law", LAW, "--json", "--tracking-uri", store, cwd=tmp_path)
    assert refit.returncode == 0, refit.stderr[-3000:]
    report = json.loads(refit.stdout)
    assert report["status"] == "registered" and report["version"] == "1"
    assert MlflowClient(store, registry_uri=store).get_model_version(law_model_name(LAW), "1").status == "READY"
    predict = _cli(core_venv, "predict", "--law", LAW, "--n", "1e6", "--d-f", "1e5", "--tracking-uri", store,
                   cwd=tmp_path)
    assert predict.returncode == 0, predict.stderr[-3000:]
    assert "D_T" in predict.stdout
    assert set(report["k_per_char"]) >= {"value", "low", "high", "convention"}  # the paper's unit, or why not
    out = tmp_path / "report"
    done = _cli(core_venv, "report", "--law", LAW, "--tracking-uri", store, "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "index.html").is_file() and (out / "loss_vs_data.svg").is_file() and not list(out.glob("*.png"))


def test_training_commands_name_the_extra(core_venv: Path, tmp_path: Path) -> None:
    # Their --help needs no torch (the argument dataclasses are torch-free); running one names the extra.
    help_text = _cli(core_venv, "pretrain", "--help", cwd=tmp_path)
    assert help_text.returncode == 0 and "--train.max-steps" in help_text.stdout, help_text.stderr[-2000:]
    for command in (["pretrain", "--preset", "1x32"], ["demo", "--quick"]):
        done = _cli(core_venv, *command, cwd=tmp_path)
        assert done.returncode != 0
        assert "mlflow-transfer-laws[train]" in done.stderr, done.stderr[-2000:]
        assert "Traceback" not in done.stderr


@pytest.fixture
def core_server(core_venv: Path, store: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    cmd = [str(core_venv / "bin" / "mlflow"), "server", "--app-name", "transfer-laws", "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1", "--backend-store-uri", store]
    with mlflow_server(cmd, port, env=_env(), cwd=tmp_path, log=tmp_path / "server.log", what="the core server") as uri:
        yield uri


def test_core_serves_the_law_page(core_server: str) -> None:
    with urllib.request.urlopen(f"{core_server}/transfer-laws/api/laws", timeout=60) as response:
        laws = json.loads(response.read())
    assert LAW in json.dumps(laws)
    with urllib.request.urlopen(f"{core_server}/transfer-laws/", timeout=60) as response:
        assert response.status == 200 and LAW in response.read().decode()
