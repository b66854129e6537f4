"""k per character, the paper's unit: the target's characters per token measured on a law's runs, and k converted.

The convention. A law is fitted with D_F and D in tokens of its tokenizer (the unit training budgets are set in).
Every run also logs the characters its tokens decode to (``D_F_chars`` of a fine-tune, ``D_chars`` of a scratch
run: ``lightning_modules/data.py`` counts whole documents' text and a cut document's decoded prefix). Both come
from the target corpus under one tokenizer, so with c = sum(chars) / sum(tokens) over the law's runs,
D_chars = c * D_tokens and D_T,chars = c * D_T,tokens, which gives k_chars = k_tokens * c^(1 - alpha); alpha and
beta do not change. That is exact when every run has the same c; the per-run ratios' range is kept beside c, and a
fit whose runs disagree by more than ``SPREAD_WARNING`` says so. The interval of k per character converts every
bootstrap draw with its own alpha (c is measured, not drawn: its error is far below k's).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from transfer_laws.registry.records import RunResult

SPREAD_WARNING = 0.10
"""Per-run characters per token further apart than this (relative) make k per character approximate: a warning."""
CONVENTION = ("D_F and D in characters of the decoded text (the paper's unit): k_chars = k_tokens * c^(1 - alpha), "
              "c the target's characters per token measured on the law's runs; alpha and beta do not change")
NO_CHARACTERS = ("its runs logged no character counts (D_F_chars, D_chars), so k has no value per character; "
                 "runs trained by this version of the package log them")


@dataclass(frozen=True)
class CharsPerToken:
    """The target's characters per token, measured on a law's runs."""

    value: float
    """sum of the runs' characters over the sum of their tokens."""
    low: float
    """Smallest per-run ratio."""
    high: float
    """Largest per-run ratio."""
    runs: int
    """Runs that logged characters (the ones measured)."""
    of: int
    """Runs the law read (scratch runs and fine-tunes that passed the field checks)."""

    def spread(self) -> float:
        """How far the per-run ratios are apart, relative (0 when every run has the same c)."""
        return self.high / self.low - 1.0


def measure(runs: Iterable[RunResult]) -> CharsPerToken | None:
    """c over the ``runs`` that logged a positive, finite character count beside their tokens (None when none did)."""
    runs = list(runs)
    pairs = [(float(r.d_f_chars), float(r.d_f_tokens)) for r in runs
             if r.d_f_chars is not None and math.isfinite(r.d_f_chars) and r.d_f_chars > 0 and r.d_f_tokens > 0]
    if not pairs:
        return None
    ratios = [c / t for c, t in pairs]
    return CharsPerToken(value=sum(c for c, _ in pairs) / sum(t for _, t in pairs), low=min(ratios),
                         high=max(ratios), runs=len(pairs), of=len(runs))


def spread_warning(c: CharsPerToken | None) -> list[str]:
    """A warning when the runs' characters per token differ too much for one c to convert k."""
    if c is None or c.spread() <= SPREAD_WARNING:
        return []
    return [f"the runs' characters per token range from {c.low:.3g} to {c.high:.3g} (more than "
            f"{SPREAD_WARNING:.0%} apart): k per character, converted with their pooled {c.value:.3g}, is approximate"]


@dataclass(frozen=True)
class KPerChar:
    """k with D_F in characters and its 95% interval, or why there is none."""

    value: float | None
    low: float | None
    """NaN when the draws give no interval; None with the value."""
    high: float | None
    chars_per_token: CharsPerToken | None
    """The c it was converted with (None for a law fitted in characters, or when there is no value)."""
    why: str = ""
    """Why there is no value ("" when there is one)."""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready, with the convention spelled out."""
        c = self.chars_per_token
        return {"value": self.value, "low": _finite(self.low), "high": _finite(self.high),
                "chars_per_token": None if c is None else asdict(c), "convention": CONVENTION,
                **({"why": self.why} if self.why else {})}

    def text(self) -> str:
        """``1.23e+04 [4.5e+03, 3.1e+04]``, or ``n/a`` with the reason."""
        if self.value is None:
            return f"n/a ({self.why})"
        return f"{self.value:.3g} [{_bound(self.low)}, {_bound(self.high)}]"

    def basis(self) -> str:
        """What the conversion rests on, one clause: ``c = 3.2 characters per token over 14 of 14 runs (...)``."""
        c = self.chars_per_token
        if c is None:
            return "fitted in characters" if self.value is not None else self.why
        return (f"c = {c.value:.3g} characters per token over {c.runs} of {c.of} runs (per run {c.low:.3g} to "
                f"{c.high:.3g}); k_chars = k_tokens · c^(1−α)")


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _bound(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3g}"


def convert_to_chars(k: float, alpha: float, draws: dict[str, np.ndarray], k_interval: tuple[float, float] | None,
                     unit: str, c: CharsPerToken | None) -> KPerChar:
    """k per character of a law in ``unit`` with point values ``k``, ``alpha``, bootstrap ``draws`` and k's 95%
    interval: the law's own k when it is in characters, else k converted with ``c`` draw by draw."""
    if unit == "chars":
        low, high = k_interval if k_interval is not None else (math.nan, math.nan)
        return KPerChar(float(k), float(low), float(high), None)
    if c is None:
        return KPerChar(None, None, None, None, NO_CHARACTERS)
    k_draws = np.asarray(draws.get("k", np.empty(0)), dtype=float)
    alpha_draws = np.asarray(draws.get("alpha", np.empty(0)), dtype=float)
    converted = k_draws * c.value ** (1.0 - alpha_draws) if k_draws.size == alpha_draws.size else np.empty(0)
    finite = converted[np.isfinite(converted)]
    low, high = (float(x) for x in np.percentile(finite, [2.5, 97.5])) if finite.size >= 2 else (math.nan, math.nan)
    return KPerChar(float(k) * c.value ** (1.0 - alpha), low, high, c)
