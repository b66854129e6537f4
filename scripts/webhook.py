"""``transfer-laws webhook``: subscribe the server's law refits to registry events (signed MLflow webhooks).

The webhook posts to ``<url>`` (the app plugin's ``/transfer-laws/api/webhook``), signed with ``--secret``; the
server must have the same secret in ``TRANSFER_LAWS_WEBHOOK_SECRET``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from transfer_laws.plugin.webhooks import create_webhook
from transfer_laws.registry.schema import ENV_WEBHOOK_SECRET
from transfer_laws.registry.tracking import use_tracking_uri


@dataclass(kw_only=True)
class Args:
    """Arguments of ``transfer-laws webhook``."""

    url: str
    """Receiver URL, e.g. https://mlflow.example.internal/transfer-laws/api/webhook."""
    secret: str | None = None
    """HMAC secret (default: TRANSFER_LAWS_WEBHOOK_SECRET)."""
    tracking_uri: str | None = None
    """MLflow server URI (webhooks need a server, not the embedded store)."""


def run(args: Args) -> int:
    uri = use_tracking_uri(args.tracking_uri)
    secret = args.secret or os.environ.get(ENV_WEBHOOK_SECRET)
    if not secret:
        raise ValueError("a webhook needs a secret: --secret or TRANSFER_LAWS_WEBHOOK_SECRET")
    webhook_id = create_webhook(uri, args.url, secret)
    print(f"created webhook {webhook_id} -> {args.url}")
    return 0
