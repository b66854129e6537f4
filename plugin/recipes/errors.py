"""Errors whose message is the whole story: the command line prints them as one line and exits with their code."""

from __future__ import annotations

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
