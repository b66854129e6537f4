"""The refit hook on the real server stack (``mlflow server --app-name transfer-laws`` on PostgreSQL + S3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from law_runs import land_finetunes, land_scratch_runs
from mlflow import MlflowClient

from transfer_laws.plugin.webhooks import ROUTE, create_webhook, signature
from transfer_laws.registry.refit import INPUTS_ARTIFACT
from transfer_laws.registry.schema import LAW_TAG_FINGERPRINT, law_model_name

pytestmark = pytest.mark.server


def _law() -> str:
    """A law of its own per test (the server keeps its data for the whole session)."""
    return f"text-to-t{uuid.uuid4().hex[:8]}"


def _wait_for_inputs(client: MlflowClient, law: str, run_ids: list[str], timeout_s: float = 240) -> str:
    """The first version whose inputs include every one of ``run_ids``; fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for mv in client.search_model_versions(f"name = '{law_model_name(law)}'"):
            with tempfile.TemporaryDirectory() as tmp:
                inputs = json.loads(Path(client.download_artifacts(mv.run_id, INPUTS_ARTIFACT, tmp)).read_text())
            if set(run_ids) <= set(inputs["input_run_ids"]):
                return mv.version
        time.sleep(1)
    raise AssertionError(f"no version of {law} includes all {len(run_ids)} runs after {timeout_s} s")


def _idle(client: MlflowClient, law: str, quiet_s: float = 20) -> list:
    """The law's versions once no new one appeared for ``quiet_s``."""
    seen, since = -1, time.monotonic()
    while True:
        versions = client.search_model_versions(f"name = '{law_model_name(law)}'")
        if len(versions) != seen:
            seen, since = len(versions), time.monotonic()
        elif time.monotonic() - since > quiet_s:
            return versions
        time.sleep(1)


def test_a_run_ending_over_rest_yields_a_version_with_its_artifacts_in_s3(server_stack) -> None:
    uri = server_stack.tracking_uri
    client = MlflowClient(uri, uri)
    law = _law()
    exp = client.create_experiment(f"runs-{law}")
    land_scratch_runs(client, exp, law=law)
    finetunes = land_finetunes(client, exp, 12, law=law)
    version = _wait_for_inputs(client, law, finetunes[-1:])
    mv = client.get_model_version(law_model_name(law), version)
    assert mv.tags[LAW_TAG_FINGERPRINT]
    assert {"alpha", "beta", "k"} <= set(client.get_run(mv.run_id).data.metrics)
    latest = client.get_model_version_by_alias(law_model_name(law), "latest")
    assert int(latest.version) >= int(version)
    keys = [o["Key"] for p in server_stack.s3_client().get_paginator("list_objects_v2").paginate(
        Bucket=server_stack.bucket) for o in p.get("Contents", [])]
    assert any(mv.run_id in k and k.endswith(INPUTS_ARTIFACT) for k in keys)  # where the fit lies: test_refit.py


def test_burst_of_50_coalesces_and_racing_processes_add_no_duplicate(server_stack) -> None:
    uri = server_stack.tracking_uri
    client = MlflowClient(uri, uri)
    law = _law()
    exp = client.create_experiment(f"runs-{law}")
    land_scratch_runs(client, exp, law=law)
    burst = land_finetunes(client, exp, 50, law=law)
    # Two more refitting processes race the server's own worker on the same input set.
    env = dict(os.environ, TRANSFER_LAWS_LOCK_DB=os.environ["TL_MLFLOW_BACKEND_URI"])
    code = "import sys;from transfer_laws.registry.refit import refit_law;"
    code += "print(refit_law(sys.argv[1], tracking_uri=sys.argv[2], bootstrap=50, plots=False).status)"
    procs = [subprocess.Popen([sys.executable, "-c", code, law, uri], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    for proc in procs:
        proc.communicate(timeout=300)
        assert proc.returncode == 0
    _wait_for_inputs(client, law, burst)
    versions = _idle(client, law)
    fingerprints = [v.tags[LAW_TAG_FINGERPRINT] for v in versions]
    assert len(fingerprints) == len(set(fingerprints)), "two versions for one input set"
    assert len(versions) <= 8, f"{len(versions)} versions for a burst of 50"


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # test server
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_webhook_endpoint_on_the_server(server_stack) -> None:
    secret = os.environ.get("TL_WEBHOOK_SECRET")
    if not secret:
        pytest.skip("TL_WEBHOOK_SECRET not exported by .ci/services.sh")
    url = server_stack.tracking_uri + ROUTE
    body = json.dumps({"entity": "registered_model", "action": "created", "timestamp": "x",
                       "data": {"name": "n"}}).encode()
    delivery, stamp = str(uuid.uuid4()), str(int(time.time()))
    good = {"X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": stamp,
            "X-MLflow-Signature": signature(secret, delivery, stamp, body)}
    assert _post(url, body, dict(good, **{"X-MLflow-Signature": signature("x", delivery, stamp, body)}))[0] == 401
    old = str(int(time.time()) - 1000)
    stale = dict(good, **{"X-MLflow-Timestamp": old, "X-MLflow-Signature": signature(secret, delivery, old, body)})
    assert _post(url, body, stale)[0] == 401
    assert _post(url, body, good) == (200, {"status": "ignored"})
    assert _post(url, body, good)[0] == 403
    bad = b"{not json"
    assert _post(url, bad, dict(good, **{"X-MLflow-Signature": signature(secret, delivery, stamp, bad)}))[0] == 400

    # A delivery signed and sent by MLflow itself.
    client = MlflowClient(server_stack.tracking_uri, server_stack.tracking_uri)
    webhook_id = create_webhook(server_stack.tracking_uri, url, secret)
    try:
        result = client.test_webhook(webhook_id)
        assert result.success, (result.response_status, result.response_body, result.error_message)
        assert json.loads(result.response_body)["status"] == "queued"
    finally:
        client.delete_webhook(webhook_id)
