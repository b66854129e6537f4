"""Signed webhooks: only fresh, correctly signed, first-time MLflow events of a pretrained checkpoint refit laws."""

from __future__ import annotations

import io
import json
import time
import uuid

import pytest
from flask import Flask

from transfer_laws.plugin.webhooks import (
    MAX_BODY_BYTES,
    ROUTE,
    ReplayGuard,
    WebhookRejected,
    checkpoint_of,
    register_webhook_route,
    signature,
    verify_delivery,
)
from transfer_laws.registry.schema import ENV_WEBHOOK_SECRET

SECRET = "s3cret"
CONFIGURED = "http://127.0.0.1:5999"


def _event(name: str = "gpt-text", version: str = "3", action: str = "created") -> bytes:
    data = {"name": name, "version": version, "source": "models:/m-1", "run_id": None, "tags": {}}
    return json.dumps({"entity": "model_version", "action": action, "timestamp": "2026-01-01T00:00:00Z",
                       "data": data}).encode()


def _headers(body: bytes, *, secret: str = SECRET, delivery: str | None = None, ts: int | None = None) -> dict:
    delivery = delivery or str(uuid.uuid4())
    stamp = str(int(time.time()) if ts is None else ts)
    return {"X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": stamp,
            "X-MLflow-Signature": signature(secret, delivery, stamp, body), "Content-Type": "application/json"}


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> tuple:
    monkeypatch.setenv(ENV_WEBHOOK_SECRET, SECRET)
    app = Flask("webhook-test")
    queued: list[tuple[str, str, str]] = []
    register_webhook_route(app, enqueue=lambda *args: queued.append(args), server_uri=CONFIGURED)
    return app.test_client(), queued


def test_signature_matches_mlflows_v1_format() -> None:
    import base64
    import hashlib
    import hmac

    body = b'{"a": 1}'
    mac = hmac.new(b"k", b"d.1.{\"a\": 1}", hashlib.sha256).digest()
    assert signature("k", "d", "1", body) == "v1," + base64.b64encode(mac).decode()


def test_good_delivery_enqueues_the_checkpoint(served: tuple) -> None:
    client, queued = served
    body = _event()
    # The Host header is the caller's to choose: refits go to the server's configured address regardless.
    response = client.post(ROUTE, data=body, headers=dict(_headers(body), Host="127.0.0.1:1"))
    assert response.status_code == 200, response.json
    assert response.json["status"] == "queued"
    assert queued == [("gpt-text", "3", CONFIGURED)]


def test_oversized_bodies_get_413_before_they_are_read(served: tuple) -> None:
    client, queued = served
    body = json.dumps({"entity": "model_version", "action": "created",
                       "data": {"name": "gpt-text", "version": "3", "pad": "x" * MAX_BODY_BYTES}}).encode()
    declared = client.post(ROUTE, data=body, headers=_headers(body))
    assert declared.status_code == 413 and "bytes" in declared.json["error"]
    # No Content-Length (a chunked upload): read only up to the limit.
    undeclared = client.post(ROUTE, input_stream=io.BytesIO(body), headers=_headers(body),
                             environ_overrides={"wsgi.input_terminated": True})
    assert undeclared.status_code == 413
    # Unsigned: refused on its headers, whatever it claims to carry.
    unsigned = client.post(ROUTE, data=b"{}", headers={"Content-Length": str(10**9)})
    assert unsigned.status_code == 401
    assert queued == []


@pytest.mark.parametrize(
    ("mutate", "status", "reason"),
    [
        (lambda b, h: h.update({"X-MLflow-Signature": signature("wrong", h["X-MLflow-Delivery-Id"],
                                                                h["X-MLflow-Timestamp"], b)}), 401, "bad signature"),
        (lambda b, h: h.pop("X-MLflow-Signature"), 401, "missing"),
        (lambda b, h: h.update(_headers(b, ts=int(time.time()) - 301)), 401, "stale"),
        (lambda b, h: h.update(_headers(b, ts=int(time.time()) + 400)), 401, "stale"),
    ],
)
def test_forged_or_stale_deliveries_are_rejected(served: tuple, mutate, status: int, reason: str) -> None:
    client, queued = served
    body = _event()
    headers = _headers(body)
    mutate(body, headers)
    response = client.post(ROUTE, data=body, headers=headers)
    assert response.status_code == status
    assert reason in response.json["error"]
    assert queued == []


def test_tampered_body_is_rejected(served: tuple) -> None:
    client, queued = served
    headers = _headers(_event(version="3"))
    response = client.post(ROUTE, data=_event(version="4"), headers=headers)
    assert response.status_code == 401 and queued == []


def test_replayed_delivery_is_rejected(served: tuple) -> None:
    client, queued = served
    body = _event()
    headers = _headers(body)
    assert client.post(ROUTE, data=body, headers=headers).status_code == 200
    again = client.post(ROUTE, data=body, headers=headers)
    assert again.status_code == 403 and "replayed" in again.json["error"]
    assert len(queued) == 1


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"entity": "model_version"}', b'{"data": {}}'])
def test_malformed_body_is_400(served: tuple, body: bytes) -> None:
    client, queued = served
    response = client.post(ROUTE, data=body, headers=_headers(body))
    assert response.status_code == 400 and queued == []


def test_an_event_whose_data_is_not_an_object_is_an_error_not_a_checkpoint() -> None:
    # verify_delivery answers 400 for such a body; an event handed to checkpoint_of directly says what is wrong
    with pytest.raises(ValueError, match="data is an object"):
        checkpoint_of({"entity": "model_version", "action": "created", "data": ["pretrained-text", "1"]})
    assert checkpoint_of({"entity": "model_version", "action": "created",
                          "data": {"name": "pretrained-text", "version": 1}}) == ("pretrained-text", "1")


def test_other_events_are_ignored(served: tuple) -> None:
    client, queued = served
    body = json.dumps({"entity": "registered_model", "action": "created", "data": {"name": "x"}}).encode()
    response = client.post(ROUTE, data=body, headers=_headers(body))
    assert response.status_code == 200 and response.json["status"] == "ignored" and queued == []


def test_without_a_secret_nothing_is_accepted(served: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    client, queued = served
    monkeypatch.delenv(ENV_WEBHOOK_SECRET)
    body = _event()
    assert client.post(ROUTE, data=body, headers=_headers(body)).status_code == 503
    assert queued == []


def test_a_forged_call_cannot_burn_a_real_delivery_id() -> None:
    guard = ReplayGuard()
    body = _event()
    real = _headers(body)
    forged = dict(real, **{"X-MLflow-Signature": "v1,AAAA"})
    with pytest.raises(WebhookRejected):
        verify_delivery(forged, body, SECRET, guard)
    assert verify_delivery(real, body, SECRET, guard)["data"]["version"] == "3"
