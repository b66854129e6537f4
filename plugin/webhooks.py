"""Signed MLflow registry webhooks: ``POST /transfer-laws/api/webhook`` refits the laws a new checkpoint affects.

MLflow signs each delivery with ``X-MLflow-Signature: v1,<base64 HMAC-SHA256(secret,
f"{delivery_id}.{timestamp}.{raw_body}")>`` plus ``X-MLflow-Delivery-Id`` and ``X-MLflow-Timestamp`` (unix
seconds). We reject a bad signature (401), a timestamp more than 300 s away (401), a delivery id seen before
(403, replay) and a body that is not an MLflow event (400). The secret is ``TRANSFER_LAWS_WEBHOOK_SECRET``; with
no secret set every call is refused (503), never accepted unsigned. Replayed ids are remembered per process for
the staleness window, which is all a replay can use (older timestamps are stale anyway).

Events acted on: ``model_version.created``, ``model_version_tag.set`` and ``model_version_alias.created`` of a
version tagged ``transfer.kind=pretrained-checkpoint``: every law whose source is that checkpoint's corpus is
refitted (resolved on the refit thread, not in the request).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

SECRET_ENV = "TRANSFER_LAWS_WEBHOOK_SECRET"
ROUTE = "/transfer-laws/api/webhook"
MAX_AGE_S = 300
EVENTS = ("model_version.created", "model_version_tag.set", "model_version_alias.created")
WEBHOOK_NAME = "transfer-laws-refit"


class WebhookRejected(Exception):
    """A delivery we refuse; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The ``X-MLflow-Signature`` value MLflow sends for this delivery."""
    message = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class ReplayGuard:
    """Delivery ids seen within the staleness window (thread-safe)."""

    def __init__(self, window_s: float = MAX_AGE_S) -> None:
        self.window_s = window_s
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_time(self, delivery_id: str, now: float) -> bool:
        with self._lock:
            self._seen = {d: t for d, t in self._seen.items() if now - t <= 2 * self.window_s}
            if delivery_id in self._seen:
                return False
            self._seen[delivery_id] = now
            return True


def verify_delivery(
    headers: Any, body: bytes, secret: str, guard: ReplayGuard, now: float | None = None
) -> dict[str, Any]:
    """Check signature, age and novelty of a delivery; returns the parsed event or raises ``WebhookRejected``."""
    now = time.time() if now is None else now
    delivery_id = headers.get("X-MLflow-Delivery-Id") or ""
    timestamp = headers.get("X-MLflow-Timestamp") or ""
    sent = headers.get("X-MLflow-Signature") or ""
    if not (delivery_id and timestamp and sent):
        raise WebhookRejected(401, "missing X-MLflow-Delivery-Id, X-MLflow-Timestamp or X-MLflow-Signature")
    if not hmac.compare_digest(sent, signature(secret, delivery_id, timestamp, body)):
        raise WebhookRejected(401, "bad signature")
    try:
        age = abs(now - int(timestamp))
    except ValueError:
        raise WebhookRejected(401, "timestamp is not unix seconds") from None
    if age > MAX_AGE_S:
        raise WebhookRejected(401, f"stale timestamp ({age:.0f} s old, limit {MAX_AGE_S} s)")
    try:
        event = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WebhookRejected(400, "body is not JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("data"), dict) or "entity" not in event:
        raise WebhookRejected(400, "body is not an MLflow webhook event (entity, action, data)")
    # Only a genuine, fresh delivery may consume its id: a forged call cannot burn a real one.
    if not guard.first_time(delivery_id, now):
        raise WebhookRejected(403, f"replayed delivery id {delivery_id}")
    return event


def checkpoint_of(event: dict[str, Any]) -> tuple[str, str] | None:
    """(model name, version) of a model-version event we act on, else None."""
    if f"{event.get('entity')}.{event.get('action')}" not in EVENTS:
        return None
    data = event["data"]
    name, version = data.get("name"), data.get("version")
    if not isinstance(name, str) or version is None:
        return None
    return name, str(version)


def laws_of_checkpoint(client: Any, name: str, version: str) -> list[str]:
    """Laws fed by a pretrained checkpoint version: those whose source is its corpus."""
    from transfer_laws.registry.reader import known_laws
    from transfer_laws.registry.schema import CKPT_KIND_PRETRAINED, CKPT_TAG_CORPUS, CKPT_TAG_KIND

    tags = client.get_model_version(name, version).tags
    if tags.get(CKPT_TAG_KIND) != CKPT_KIND_PRETRAINED or not tags.get(CKPT_TAG_CORPUS):
        return []
    return known_laws(client, source=tags[CKPT_TAG_CORPUS])


def _default_enqueue(name: str, version: str, server_uri: str) -> None:
    from transfer_laws.registry.refit import _client, get_service

    get_service(server_uri).enqueue_resolver(lambda: laws_of_checkpoint(_client(server_uri), name, version))


def register_webhook_route(
    flask_app: Any, enqueue: Callable[[str, str, str], None] | None = None, guard: ReplayGuard | None = None
) -> None:
    """Add the webhook endpoint; ``enqueue(model_name, version, server_uri)`` receives accepted checkpoint events."""
    from flask import jsonify, request

    target = enqueue or _default_enqueue
    replay = guard or ReplayGuard()

    def receive() -> Any:
        secret = os.environ.get(SECRET_ENV)
        if not secret:
            return jsonify(error=f"webhooks are disabled: {SECRET_ENV} is not set"), 503
        try:
            event = verify_delivery(request.headers, request.get_data(cache=True), secret, replay)
        except WebhookRejected as exc:
            return jsonify(error=exc.reason), exc.status
        checkpoint = checkpoint_of(event)
        if checkpoint is None:
            return jsonify(status="ignored"), 200
        target(checkpoint[0], checkpoint[1], request.host_url.rstrip("/"))
        return jsonify(status="queued", model=checkpoint[0], version=checkpoint[1]), 200

    flask_app.add_url_rule(ROUTE, "transfer_laws_webhook", receive, methods=["POST"])


def create_webhook(tracking_uri: str, url: str, secret: str) -> str:
    """Subscribe ``url`` (our endpoint on the server) to checkpoint events; returns the webhook id."""
    from mlflow import MlflowClient

    if not secret:
        raise ValueError("a webhook needs a secret (the server verifies every delivery)")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"webhook url {url!r} must be http(s)")
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    webhook = client.create_webhook(name=WEBHOOK_NAME, url=url, events=list(EVENTS), secret=secret)
    return webhook.webhook_id
