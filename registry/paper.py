"""The paper's published fits, defined once: Hernandez, Kaplan, Henighan, McCandlish (2021), *Scaling Laws for
Transfer*, Table 1. Fine-tuning on Python; D_F in characters, N non-embedding parameters, loss in nats/token.

Shown beside our fits on the version description, the law page and the report. A leaf: imports nothing.
"""

from __future__ import annotations

PAPER_TABLE_1: dict[str, dict[str, float | str]] = {
    "text-to-python": {"k": 1.9e4, "alpha": 0.18, "beta": 0.38, "pretrained on": "text"},
    "mix-to-python": {"k": 2.1e5, "alpha": 0.096, "beta": 0.38, "pretrained on": "50% text + 50% code"},
}
"""Law -> its published k (D_F in characters), alpha and beta, and what the model was pretrained on."""

TEXT_TO_PYTHON = PAPER_TABLE_1["text-to-python"]
"""The reference most of our laws are read against."""
