"""Errors the command line turns into one line and an exit code (defined with the recipes that raise them), and the
scrubbing of secrets from what it prints."""

from __future__ import annotations

import re
from typing import TextIO

from transfer_laws.plugin.recipes.errors import EXIT_BAD_INPUT, EXIT_FAILED, BadInput, UserError

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "BadInput", "RedactingStream", "UserError", "redact"]


# scheme://user:password@host -> scheme://user:***@host (tracking URIs, database URLs, S3 endpoints)
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]*:)(?P<secret>[^@\s/]*)@")


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _USERINFO.sub(lambda m: f"{m['head']}***@", text)


class RedactingStream:
    """A text stream that scrubs passwords from URLs on the way to ``target`` (for library output we cannot
    reword, e.g. MLflow's "View run <url>" line, which repeats the tracking URI)."""

    def __init__(self, target: TextIO) -> None:
        self.target = target

    def write(self, text: str) -> int:
        self.target.write(redact(text))
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return False
