"""``TransferLaw``: the fitted law (``LawData``, its numbers and evidence) with its queries, k per character, the
summary and the fit folder's I/O."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _io, _predict
from ._chars import KPerChar
from ._law_data import LawData
from ._scratch_model import ScratchModel
from ._types import ArrayLike, LawSettings, Prediction

__all__ = ["ScratchModel", "TransferLaw"]


class TransferLaw(LawData):
    """D_T = k * D_F^alpha * N^beta (N: non-embedding parameters; D_F in ``settings['unit']``), with its evidence
    (the fields of ``LawData``) and what can be asked of it."""

    @classmethod
    def from_coefficients(cls, k: float, alpha: float, beta: float, unit: str = "tokens") -> TransferLaw:
        """A law from published coefficients (e.g. the paper's Table 1, ``unit="chars"``): no runs, no draws, so
        intervals collapse to the values and loss predictions are NaN."""
        empty = np.empty(0)
        scratch = ScratchModel(levels=empty, curves=[], kaplan=None, method="interpolate", log_n=empty,
                               log_d=empty, log_l=empty)
        return cls(k=float(k), alpha=float(alpha), beta=float(beta),
                   intervals={"k": (k, k), "alpha": (alpha, alpha), "beta": (beta, beta)},
                   draws={"k": empty, "alpha": empty, "beta": empty}, points=[], excluded=[],
                   warnings=["coefficients given, not fitted"], input_run_ids=[], fingerprint="",
                   settings=LawSettings(unit=unit, d_e_method="given"), scratch=scratch)

    def exchange_headline(self) -> str:
        """"10x N is worth X x fine-tuning data [low, high]", or why the ratio is undetermined."""
        return _predict.exchange_headline(self)

    def predict(self, n_params: ArrayLike, d_f: ArrayLike) -> Prediction:
        """D_T, D_E, multiplier, fraction and best loss at (N, D_F), each with a 95% interval from the draws."""
        return _predict.predict(self, n_params, d_f)

    def d_f_for_target_loss(self, n_params: float, loss: float) -> float:
        """D_F a model of N needs, fine-tuned, to reach ``loss`` (NaN if the scratch model cannot reach it)."""
        return _predict.d_f_for_target_loss(self, n_params, loss)

    def n_for_target_loss(self, d_f: float, loss: float) -> float:
        """Smallest N that reaches ``loss`` when fine-tuned on D_F (needs the Kaplan scratch fit; NaN if none)."""
        return _predict.n_for_target_loss(self, d_f, loss)

    def k_in(self, unit: str, chars_per_token: float) -> float:
        """k in another data unit: k_tokens = k_chars * (chars/token)^(alpha - 1); alpha and beta do not change."""
        return _predict.convert_k(self.k, self.alpha, chars_per_token, self.settings.get("unit", "tokens"), unit)

    def k_per_char(self) -> KPerChar:
        """k with D_F in characters (the paper's unit) and its 95% interval, converted with the characters per token
        measured on the law's runs; no value, with the reason, when they logged no characters (see ``_chars``)."""
        return _predict.k_per_char(self)

    def summary(self) -> str:
        """A few lines for people: the law, intervals, points used, exclusions, warnings."""
        return _predict.summary(self)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict (arrays as lists)."""
        return _io.law_to_dict(self)

    def save(self, folder: str | Path) -> Path:
        """Write ``law.json`` and ``draws.npz`` into ``folder``; loss-free with ``TransferLaw.load``."""
        return _io.save_law(self, Path(folder))

    @classmethod
    def load(cls, folder: str | Path) -> TransferLaw:
        """Read a folder written by ``save``."""
        return _io.load_law(Path(folder), cls)

    @staticmethod
    def is_fit_folder(folder: str | Path) -> bool:
        """Whether ``folder`` holds a fit written by ``save``."""
        return _io.is_fit_folder(Path(folder))
