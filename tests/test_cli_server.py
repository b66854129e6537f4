"""``refit --json`` against the real server stack (PostgreSQL + S3 + ``mlflow server --app-name transfer-laws``):
stdout is one JSON document even when MLflow prints "View run <url>" as the refit run ends (it does so only for
http servers), and a password in the tracking URI appears nowhere in the output."""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

from transfer_laws.scripts import cli


def test_refit_json_on_a_server_is_one_document_and_hides_the_password(
    server_stack, capsys: pytest.CaptureFixture[str]  # the conftest's ServerStack
) -> None:
    from law_runs import land_finetunes, land_scratch_runs
    from mlflow import MlflowClient

    law = f"text-to-cli{uuid.uuid4().hex[:8]}"  # a law of its own: other tests' runs do not enter it
    client = MlflowClient(server_stack.tracking_uri)
    experiment = client.create_experiment(f"cli-json-{uuid.uuid4().hex[:8]}")
    land_scratch_runs(client, experiment, law=law)
    land_finetunes(client, experiment, 8, law=law)

    capsys.readouterr()  # MLflow's client printed "View run" lines for the runs landed above
    parts = urlsplit(server_stack.tracking_uri)
    with_password = urlunsplit(parts._replace(netloc=f"ci-bot:s3cret-pw@{parts.netloc}"))
    code = cli.main(["refit", "--law", law, "--json", "--bootstrap", "50", "--tracking-uri", with_password])
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # all of stdout, whoever registered the version (this refit or the hook)
    assert code == doc["exit_code"] == 0, captured.err
    assert doc["status"] in ("registered", "unchanged", "superseded")
    if doc["status"] == "registered":  # this process logged the refit run: MLflow's line went to stderr
        assert "View run" in captured.err
    assert "s3cret-pw" not in captured.out + captured.err
    assert doc["intervals"]["alpha"][0] <= doc["alpha"] <= doc["intervals"]["alpha"][1]
