"""Sorting input runs into usable ones and excluded ones (with reasons); nothing here raises on bad runs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ._types import (
    R_DUPLICATE,
    R_MISSING,
    R_NONFINITE,
    R_NONPOSITIVE_LOSS,
    R_NONPOSITIVE_SIZE,
    R_ROLE,
    ROLES,
    RunResult,
)


@dataclass
class Screened:
    """Runs that passed the field checks, as plain columns, and the ones that did not."""

    run_ids: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    n: list[float] = field(default_factory=list)
    d: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    excluded: list[tuple[str, str]] = field(default_factory=list)


def _number(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _problem(run: object, unit: str) -> tuple[str, tuple[str, float, float, float] | None]:
    role = getattr(run, "role", None)
    if role not in ROLES:
        return f"{R_ROLE}: {role!r}", None
    names = {"n_params": "n_params", "d": "d_f_chars" if unit == "chars" else "d_f_tokens",
             "loss": "best_test_loss"}
    values = {key: _number(getattr(run, attr, None)) for key, attr in names.items()}
    missing = [names[key] for key, value in values.items() if value is None]
    if missing:
        return f"{R_MISSING}: {', '.join(missing)}", None
    n, d, loss = values["n_params"], values["d"], values["loss"]
    assert n is not None and d is not None and loss is not None
    if not math.isfinite(loss):
        return f"{R_NONFINITE}: {loss}", None
    if loss <= 0:
        return f"{R_NONPOSITIVE_LOSS}: {loss}", None
    if not (math.isfinite(n) and math.isfinite(d) and n > 0 and d > 0):
        return f"{R_NONPOSITIVE_SIZE}: N={n}, D={d}", None
    return "", (str(role), n, d, loss)


def screen(runs: list[RunResult], unit: str) -> Screened:
    """Field checks in input order: the first run of an id wins, later ones are duplicates."""
    out = Screened()
    seen: set[str] = set()
    for i, run in enumerate(runs):
        run_id = str(getattr(run, "run_id", None) or f"<run #{i} without run_id>")
        if run_id in seen:
            out.excluded.append((run_id, R_DUPLICATE))
            continue
        seen.add(run_id)
        reason, row = _problem(run, unit)
        if row is None:
            out.excluded.append((run_id, reason))
            continue
        out.run_ids.append(run_id)
        out.roles.append(row[0])
        out.n.append(row[1])
        out.d.append(row[2])
        out.loss.append(row[3])
    return out
