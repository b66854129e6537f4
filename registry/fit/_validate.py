"""Sorting input runs into usable ones and excluded ones (with reasons); nothing here raises on bad runs.

Field checks (role, numbers present, finite, positive), then plausibility: sizes and losses no language model run
can have (a parameter count or dataset beyond ``MAX_N`` / ``MAX_D``, a loss outside ``LOSS_RANGE``, e.g. +inf stored
as 1.8e308), and points measured more than once: runs of one role at the same (N, D) whose losses differ by more than
``DUPLICATE_LOSS_RTOL`` are all excluded (nothing says which is right); repeats within it are seeds of one cell.
Scratch seeds become one point, their geometric mean, on the first run's id, since a curve holds one loss per D;
fine-tune seeds all stay (replicates average out in the least-squares fit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from transfer_laws.registry.records import MAX_D, MAX_N, RunResult
from transfer_laws.registry.schema import ROLE_SCRATCH

from ._types import (
    R_CONFLICT,
    R_DUPLICATE,
    R_IMPLAUSIBLE_LOSS,
    R_IMPLAUSIBLE_SIZE,
    R_MISSING,
    R_NONFINITE,
    R_NONPOSITIVE_LOSS,
    R_NONPOSITIVE_SIZE,
    R_REPEAT,
    R_ROLE,
    ROLES,
)

LOSS_RANGE = (1e-4, 1e3)
"""Best held-out loss in nats/token (uniform over a million-symbol vocabulary is 13.8)."""
DUPLICATE_LOSS_RTOL = 0.25
"""Repeats of one (role, N, D) point whose losses differ by more than this (relative) conflict. Seeds of one cell
differ by the data they draw: 34 seeds of one 500-token fine-tune (N = 1e5, demo --full) spanned 4.67 to 5.10
nats/token, 9% apart, and at 5% the pin loop's repeats of that cell excluded the whole cell, the first seed
included."""


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
        return float(value)  # type: ignore[arg-type]  # anything: a TypeError or ValueError means "not a number"
    except (TypeError, ValueError):
        return None


def _problem(run: object) -> tuple[str, tuple[str, float, float, float] | None]:
    role = getattr(run, "role", None)
    if role not in ROLES:
        return f"{R_ROLE}: {role!r}", None
    names = {"n_params": "n_params", "d": "d_f_tokens", "loss": "best_test_loss"}
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
    if n > MAX_N or d > MAX_D["tokens"]:
        return f"{R_IMPLAUSIBLE_SIZE}: N={n:.3g}, D={d:.3g} (at most {MAX_N:.0e} parameters and " \
               f"{MAX_D['tokens']:.0e} tokens)", None
    if not LOSS_RANGE[0] <= loss <= LOSS_RANGE[1]:
        return f"{R_IMPLAUSIBLE_LOSS}: {loss:.3g} nats/token (outside [{LOSS_RANGE[0]:g}, {LOSS_RANGE[1]:g}])", None
    return "", (str(role), n, d, loss)


def _drop_repeats(out: Screened) -> Screened:
    """Exclude conflicting repeats of a (role, N, D) point, and agreeing scratch repeats after the first."""
    groups: dict[tuple[str, float, float], list[int]] = {}
    for i, key in enumerate(zip(out.roles, out.n, out.d, strict=True)):
        groups.setdefault(key, []).append(i)
    drop: dict[int, str] = {}
    merged: dict[int, float] = {}  # the first scratch seed of a cell -> the geometric mean of its seeds' losses
    for (role, n, d), members in groups.items():
        if len(members) < 2:
            continue
        losses = [out.loss[i] for i in members]
        if max(losses) > (1 + DUPLICATE_LOSS_RTOL) * min(losses):
            for i in members:
                others = ", ".join(f"{out.run_ids[j]} ({out.loss[j]:.4g})" for j in members if j != i)
                drop[i] = (f"{R_CONFLICT}: {role} N={n:.4g}, D={d:.4g} measured {out.loss[i]:.4g} here and "
                           f"{others} elsewhere (more than {DUPLICATE_LOSS_RTOL:.0%} apart; which is right is unknown)")
        elif role == ROLE_SCRATCH:
            first = members[0]
            merged[first] = math.exp(sum(math.log(x) for x in losses) / len(losses))
            for i in members[1:]:
                drop[i] = (f"{R_REPEAT}: same N and D as {out.run_ids[first]}; the curve keeps their geometric mean "
                           f"({merged[first]:.4g}) there")
    if not drop:
        return out
    kept = Screened(excluded=out.excluded + [(out.run_ids[i], reason) for i, reason in sorted(drop.items())])
    for i in range(len(out.run_ids)):
        if i not in drop:
            for name in ("run_ids", "roles", "n", "d"):
                getattr(kept, name).append(getattr(out, name)[i])
            kept.loss.append(merged.get(i, out.loss[i]))
    return kept


def screen(runs: list[RunResult]) -> Screened:
    """Field and plausibility checks in input order: the first run of an id wins, later ones are duplicates.
    (A fine-tune's lineage, its parent included, is checked once, by the reader.)"""
    out = Screened()
    seen: set[str] = set()
    for i, run in enumerate(runs):
        run_id = str(getattr(run, "run_id", None) or f"<run #{i} without run_id>")
        if run_id in seen:
            out.excluded.append((run_id, R_DUPLICATE))
            continue
        seen.add(run_id)
        reason, row = _problem(run)
        if reason or row is None:
            out.excluded.append((run_id, reason))
            continue
        out.run_ids.append(run_id)
        out.roles.append(row[0])
        out.n.append(row[1])
        out.d.append(row[2])
        out.loss.append(row[3])
    return _drop_repeats(out)
