"""Fit folder: ``law.json`` (everything readable) + ``draws.npz`` (bootstrap arrays), and the input fingerprint."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TypeVar, cast

import numpy as np

from ._chars import CharsPerToken
from ._irreducible import IrreducibleLaw
from ._law_data import LawData
from ._predict import k_per_char
from ._scratch import KaplanLaw
from ._scratch_model import ScratchModel
from ._types import Checks, LawSettings, Point

L = TypeVar("L", bound=LawData)

FORMAT = "transfer-laws.fit/1"
JSON_NAME = "law.json"
NPZ_NAME = "draws.npz"


def package_version() -> str:
    """Installed version of this package ("" when not installed)."""
    try:
        return version("mlflow-transfer-laws")
    except PackageNotFoundError:
        return ""


def fingerprint_of(rows: list[tuple[str, str, float, float, float]], settings: LawSettings) -> str:
    """sha256 over the sorted (run_id, role, N, D, loss) rows (floats by repr, exact) and the fit settings."""
    payload = json.dumps({"runs": sorted([list(r) for r in rows]), "settings": settings}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def law_to_dict(law: LawData) -> dict[str, object]:
    """Everything but the arrays of draws, JSON-ready (Python's json writes floats exactly)."""
    sc = law.scratch
    return {
        "format": FORMAT, "version": law.version or package_version(),
        "k": law.k, "alpha": law.alpha, "beta": law.beta,
        "intervals": {k: list(v) for k, v in law.intervals.items()},
        "points": [vars(p) for p in law.points], "excluded": [list(e) for e in law.excluded],
        "warnings": list(law.warnings), "input_run_ids": list(law.input_run_ids), "fingerprint": law.fingerprint,
        "settings": dict(law.settings), "cross_check": law.cross_check, "checks": dict(law.checks),
        "chars_per_token": None if law.chars_per_token is None else asdict(law.chars_per_token),
        "k_per_char": k_per_char(law).as_dict(),
        "scratch": {"method": sc.method, "levels": sc.levels.tolist(),
                    "curves": [[d.tolist(), lo.tolist()] for d, lo in sc.curves],
                    "kaplan": sc.kaplan.to_dict() if sc.kaplan else None,
                    "irreducible": sc.irreducible.to_dict() if sc.irreducible else None,
                    "log_n": sc.log_n.tolist(), "log_d": sc.log_d.tolist(), "log_l": sc.log_l.tolist()},
    }


def save_law(law: LawData, folder: Path) -> Path:
    """Write the fit folder; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {f"draw_{k}": v for k, v in law.draws.items()}
    if law.kaplan_draws is not None:
        arrays["kaplan_draws"] = law.kaplan_draws
    np.savez(folder / NPZ_NAME, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
    (folder / JSON_NAME).write_text(json.dumps(law_to_dict(law), indent=1))
    return folder


def is_fit_folder(folder: Path) -> bool:
    """A folder with ``law.json`` of this format and ``draws.npz``."""
    try:
        return json.loads((folder / JSON_NAME).read_text()).get("format") == FORMAT and (folder / NPZ_NAME).is_file()
    except (OSError, ValueError, AttributeError):
        return False


def load_law(folder: Path, cls: type[L]) -> L:
    """Inverse of ``save_law``: the law as a ``cls`` (``TransferLaw``)."""
    if not is_fit_folder(folder):
        raise ValueError(f"{folder} is not a fit folder (needs {JSON_NAME} of format {FORMAT} and {NPZ_NAME})")
    data = json.loads((folder / JSON_NAME).read_text())
    with np.load(folder / NPZ_NAME) as npz:
        draws = {k[len("draw_"):]: npz[k] for k in npz.files if k.startswith("draw_")}
        kaplan_draws = npz["kaplan_draws"] if "kaplan_draws" in npz.files else None
    s = data["scratch"]
    kp = s["kaplan"]
    scratch = ScratchModel(
        levels=np.array(s["levels"], dtype=float),
        curves=[(np.array(d, dtype=float), np.array(lo, dtype=float)) for d, lo in s["curves"]],
        kaplan=KaplanLaw(kp["log_n_c"], kp["log_d_c"], kp["a_n"], kp["alpha_d"]) if kp else None,
        method=s["method"], log_n=np.array(s["log_n"], dtype=float), log_d=np.array(s["log_d"], dtype=float),
        log_l=np.array(s["log_l"], dtype=float),
        irreducible=IrreducibleLaw.from_dict(s["irreducible"]) if s.get("irreducible") else None)
    chars = data.get("chars_per_token")
    return cls(
        k=data["k"], alpha=data["alpha"], beta=data["beta"],
        intervals={k: (v[0], v[1]) for k, v in data["intervals"].items()}, draws=draws,
        points=[Point(**p) for p in data["points"]], excluded=[(e[0], e[1]) for e in data["excluded"]],
        warnings=data["warnings"], input_run_ids=data["input_run_ids"], fingerprint=data["fingerprint"],
        settings=cast(LawSettings, data["settings"]), scratch=scratch, cross_check=data["cross_check"],
        kaplan_draws=kaplan_draws,
        version=data["version"], checks=cast(Checks, data.get("checks") or {}),
        chars_per_token=CharsPerToken(**chars) if chars else None)
