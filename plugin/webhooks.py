"""Signed MLflow registry webhooks: ``POST /transfer-laws/api/webhook`` refits the laws a new checkpoint affects.

MLflow signs each delivery with ``X-MLflow-Signature: v1,<base64 HMAC-SHA256(secret,
f"{delivery_id}.{timestamp}.{raw_body}")>`` plus ``X-MLflow-Delivery-Id`` and ``X-MLflow-Timestamp`` (unix
seconds). We reject a bad signature (401), a timestamp more than 300 s away (401), a delivery id seen before
(403, replay), a body that is not an MLflow event (400) and a body over ``MAX_BODY_BYTES`` (413). Headers and the
declared size are checked before any of the body is read, and an undeclared body is read only up to the limit
(``BodyLimit`` does the same in front of MLflow's ASGI wrapper, which would otherwise buffer it all). The secret
is ``TRANSFER_LAWS_WEBHOOK_SECRET``; with no secret set every call is refused (503), never accepted unsigned.
Seen ids are remembered for the staleness window, which is all a replay can use (older timestamps are stale
anyway): in a table of the server's SQL backend store (``StoredReplayGuard``), so a restart or another replica does
not forget them; in memory only when the backend store is not SQL.

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
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING, Protocol

from flask import jsonify, request
from werkzeug.datastructures import Headers

from transfer_laws.plugin.refit_target import refit_target
from transfer_laws.registry.reader import known_laws, read_checkpoint_version
from transfer_laws.registry.refit_service import get_service
from transfer_laws.registry.schema import (
    CKPT_KIND_PRETRAINED,
    CKPT_LINEAGE_TAGS,
    ENV_SERVER_URI,
    ENV_WEBHOOK_SECRET,
    WEBHOOK_DELIVERIES_TABLE,
)
from transfer_laws.registry.tracking import client_for, server_stores

if TYPE_CHECKING:
    from flask import Flask
    from flask.typing import ResponseReturnValue
    from mlflow import MlflowClient
    from mlflow.entities.webhook import WebhookEventStr
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

ROUTE = "/transfer-laws/api/webhook"
MAX_AGE_S = 300
EVENTS: tuple[WebhookEventStr, ...] = ("model_version.created", "model_version_tag.set", "model_version_alias.created")
WEBHOOK_NAME = "transfer-laws-refit"
MAX_BODY_BYTES = 64 * 1024
"""Largest delivery accepted (413 past it, before the body is read): MLflow's events are well under 1 KiB."""


class HeaderLookup(Protocol):
    """Request headers, looked up by name (Flask's ``request.headers``, werkzeug's ``Headers``, a dict)."""

    def get(self, key: str, /) -> str | None: ...


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


class StoredReplayGuard(ReplayGuard):
    """Delivery ids seen within the staleness window, in table ``WEBHOOK_DELIVERIES_TABLE`` of a SQL database: the
    primary key makes "first time" atomic across processes. A database that cannot answer refuses the delivery
    (the route answers 503; MLflow retries)."""

    def __init__(self, db_uri: str, window_s: float = MAX_AGE_S) -> None:
        super().__init__(window_s)
        import sqlalchemy as sa  # lazy: only a SQL backend store needs it, and the server app imports this module

        self._engine = sa.create_engine(db_uri, pool_pre_ping=True)
        self._table = sa.Table(WEBHOOK_DELIVERIES_TABLE, sa.MetaData(),
                               sa.Column("delivery_sha256", sa.String(64), primary_key=True),
                               sa.Column("seen_at", sa.Float, nullable=False, index=True))
        self._created = False

    def first_time(self, delivery_id: str, now: float) -> bool:
        import sqlalchemy as sa  # lazy: see __init__

        if not self._created:
            self._table.create(self._engine, checkfirst=True)
            self._created = True
        key = hashlib.sha256(delivery_id.encode()).hexdigest()  # any id fits the column
        with self._engine.begin() as conn:
            conn.execute(self._table.delete().where(self._table.c.seen_at < now - 2 * self.window_s))
        try:
            with self._engine.begin() as conn:
                conn.execute(self._table.insert().values(delivery_sha256=key, seen_at=now))
        except sa.exc.IntegrityError:
            return False
        return True


def default_guard() -> ReplayGuard:
    """The replay guard of this server: in its backend store when that is a SQL database, else in memory."""
    backend = server_stores()[0] or ""
    if backend.startswith(("postgresql", "mysql", "sqlite", "mssql")):
        return StoredReplayGuard(backend)
    return ReplayGuard()


def verify_delivery(
    headers: HeaderLookup, body: bytes, secret: str, guard: ReplayGuard, now: float | None = None
) -> dict[str, object]:
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


def checkpoint_of(event: Mapping[str, object]) -> tuple[str, str] | None:
    """(model name, version) of a model-version event we act on (``verify_delivery``'s), else None."""
    if f"{event.get('entity')}.{event.get('action')}" not in EVENTS:
        return None
    data = event["data"]
    if not isinstance(data, dict):
        raise ValueError("an MLflow webhook event's data is an object (verify_delivery checks it)")
    name, version = data.get("name"), data.get("version")
    if not isinstance(name, str) or version is None:
        return None
    if data.get("key") in CKPT_LINEAGE_TAGS:  # the plugin's own lineage bookkeeping, set as fine-tunes start
        return None
    return name, str(version)


def laws_of_checkpoint(client: MlflowClient, name: str, version: str) -> list[str]:
    """Laws fed by a pretrained checkpoint version: those whose source is its corpus."""
    checkpoint = read_checkpoint_version(client.get_model_version(name, version))
    if checkpoint.kind != CKPT_KIND_PRETRAINED or not checkpoint.corpus:
        return []
    return known_laws(client, source=checkpoint.corpus)


def _default_enqueue(name: str, version: str, server_uri: str) -> None:
    get_service(server_uri).enqueue_resolver(lambda: laws_of_checkpoint(client_for(server_uri), name, version))


def precheck(headers: HeaderLookup) -> WebhookRejected | None:
    """What to refuse before reading a byte of the body: no secret (503), unsigned (401), declared too large (413).

    Called by the route and, under uvicorn, by ``BodyLimit`` in front of MLflow's ASGI wrapper (which buffers the
    whole body before Flask sees it)."""
    if not os.environ.get(ENV_WEBHOOK_SECRET):
        return WebhookRejected(503, f"webhooks are disabled: {ENV_WEBHOOK_SECRET} is not set")
    if not all(headers.get(h) for h in ("X-MLflow-Delivery-Id", "X-MLflow-Timestamp", "X-MLflow-Signature")):
        return WebhookRejected(401, "missing X-MLflow-Delivery-Id, X-MLflow-Timestamp or X-MLflow-Signature")
    declared = headers.get("Content-Length")
    if declared is not None:
        if not declared.strip().isdigit():
            return WebhookRejected(400, "Content-Length is not a number")
        if int(declared) > MAX_BODY_BYTES:
            return WebhookRejected(413, too_large())
    return None


def too_large() -> str:
    return f"body over {MAX_BODY_BYTES} bytes (MLflow's events are a few hundred)"


def _read_body(stream: IO[bytes]) -> bytes:
    """At most ``MAX_BODY_BYTES`` of a body whose length was not declared; 413 past that."""
    body = stream.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise WebhookRejected(413, too_large())
    return body


def register_webhook_route(
    flask_app: Flask, enqueue: Callable[[str, str, str], None] | None = None, guard: ReplayGuard | None = None,
    server_uri: str | None = None,
) -> None:
    """Add the webhook endpoint; ``enqueue(model_name, version, server_uri)`` receives accepted checkpoint events.

    ``server_uri`` (default: ``refit_target()``, the server's configured address) is where the refits go."""
    target = enqueue or _default_enqueue
    replay = guard or default_guard()
    uri = server_uri or refit_target()

    def receive() -> ResponseReturnValue:
        try:
            early = precheck(request.headers)
            if early is not None:
                raise early
            body = _read_body(request.stream) if request.content_length is None else request.get_data(cache=True)
            event = verify_delivery(request.headers, body, os.environ[ENV_WEBHOOK_SECRET], replay)
        except WebhookRejected as exc:
            return jsonify(error=exc.reason), exc.status
        except Exception as exc:  # the store of seen ids cannot answer: refuse (MLflow retries), never accept blind
            return jsonify(error=f"cannot check for replays now: {type(exc).__name__}"), 503
        checkpoint = checkpoint_of(event)
        if checkpoint is None:
            return jsonify(status="ignored"), 200
        if uri is None:
            return jsonify(error=f"refits are off: the server's own address is unknown; set {ENV_SERVER_URI}"), 503
        target(checkpoint[0], checkpoint[1], uri)
        return jsonify(status="queued", model=checkpoint[0], version=checkpoint[1]), 200

    flask_app.add_url_rule(ROUTE, "transfer_laws_webhook", receive, methods=["POST"])


class BodyLimit:
    """ASGI middleware: the webhook route's ``precheck`` and body limit, applied before anything buffers the body."""

    def __init__(self, app: ASGIApp, path: str = ROUTE) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return
        headers = Headers(  # case-insensitive, like Flask's request.headers
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])])
        early = precheck(headers)
        if early is not None:
            await _answer(send, early)
            return
        received, over = 0, False

        async def limited() -> Message:
            # Past the limit the app sees the body end (it has at most one chunk more than the limit) ...
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:
                over = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def answer(message: Message) -> None:
            # ... and whatever it answers is replaced by the 413.
            if not over:
                await send(message)
            elif message["type"] == "http.response.start":
                await _answer(send, WebhookRejected(413, too_large()))

        await self.app(scope, limited, answer)


async def _answer(send: Send, rejected: WebhookRejected) -> None:
    body = json.dumps({"error": rejected.reason}).encode()
    await send({"type": "http.response.start", "status": rejected.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def create_webhook(tracking_uri: str, url: str, secret: str) -> str:
    """Subscribe ``url`` (our endpoint on the server) to checkpoint events; returns the webhook id."""

    if not secret:
        raise ValueError("a webhook needs a secret (the server verifies every delivery)")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"webhook url {url!r} must be http(s)")
    client = client_for(tracking_uri)
    webhook = client.create_webhook(name=WEBHOOK_NAME, url=url, events=list(EVENTS), secret=secret)
    return webhook.webhook_id
