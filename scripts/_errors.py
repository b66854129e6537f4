"""Errors the command line turns into one line and an exit code, and the scrubbing of secrets from what it prints."""

from __future__ import annotations

import re
from typing import Any

EXIT_FAILED = 1
"""The command could not do its job (an error not caused by the arguments)."""
EXIT_BAD_INPUT = 2
"""An argument is invalid (decided before any work starts)."""


class UserError(Exception):
    """An error whose message is the whole story (one line, no traceback hint); ``exit_code`` says which kind."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class BadInput(UserError):
    """An argument the command cannot use: exit 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_BAD_INPUT)


# scheme://user:password@host -> scheme://user:***@host (tracking URIs, database URLs, S3 endpoints)
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]*:)(?P<secret>[^@\s/]*)@")


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _USERINFO.sub(lambda m: f"{m['head']}***@", text)


class RedactingStream:
    """A text stream that scrubs passwords from URLs on the way to ``target`` (for library output we cannot
    reword, e.g. MLflow's "View run <url>" line, which repeats the tracking URI)."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def write(self, text: str) -> int:
        self.target.write(redact(text))
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return False
