"""The refit command's old import path: ``transfer-laws refit`` lives in ``transfer_laws.scripts.refit``."""

from transfer_laws.scripts.refit import (
    EXIT_BAD_INPUT,
    EXIT_DRIFT,
    EXIT_ERROR,
    EXIT_EVIDENCE,
    EXIT_FIT_FAILED,
    EXIT_OK,
    refit_cli,
)

__all__ = ["EXIT_BAD_INPUT", "EXIT_DRIFT", "EXIT_ERROR", "EXIT_EVIDENCE", "EXIT_FIT_FAILED", "EXIT_OK", "refit_cli"]
