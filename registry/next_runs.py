"""Choosing the next runs, around the numerics of ``registry/fit/advice.py``: the candidates (a law's own runs and one
step beyond them, or a sweep's grid cells; N from the preset's non-embedding parameter count) with the command that
trains each, the table and the plan ``predict --next`` prints, and the adaptive order ``sweep --adaptive`` trains in
(a space-filling seed, then the advice's best remaining cell, until alpha is pinned).

No MLflow and no torch: a preset's N comes from the torch-free ``lightning_modules/config.py``, and the store is only
read through the client a caller passes (``wall_time``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol, TypedDict, TypeVar

import numpy as np

from transfer_laws.lightning_modules.config import PRESETS, preset
from transfer_laws.registry.fit.advice import (
    Advice,
    Candidate,
    Plan,
    Target,
    WallTime,
    alpha_halfwidth,
    compute_flops,
    rank_next_runs,
)
from transfer_laws.registry.schema import DEMO_CHECKPOINT_TEMPLATE, ROLE_FINETUNE, ROLE_SCRATCH

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from transfer_laws.registry.fit import TransferLaw


def preset_n(size: str) -> int:
    """N (non-embedding parameters, the schema's convention) of a PRESETS shape; independent of the vocabulary (the
    config is torch-free: a shape's N needs no model)."""
    return preset(size, vocab_size=256).non_embedding_params()


class GridCell(Protocol):
    """A sweep's cell as the advice reads it."""

    @property
    def size(self) -> str: ...
    @property
    def d_f_tokens(self) -> int: ...
    @property
    def role(self) -> str: ...


CellT = TypeVar("CellT")
ResultT = TypeVar("ResultT")


def candidates_for(cells: Sequence[GridCell], epochs: float = 3.0) -> list[Candidate]:
    """One Candidate per sweep cell (``size``, ``d_f_tokens``, ``role``), labelled with the preset."""
    return [Candidate(n_params=preset_n(c.size), d_f_tokens=c.d_f_tokens, role=c.role, epochs=epochs, label=c.size)
            for c in cells]


PRETRAIN_TOKENS_PER_PARAM = 20.0
"""A new size's pretraining, in tokens per non-embedding parameter (the demo's recipe, Hoffmann et al. 2022)."""
CHECKPOINT_TEMPLATE = DEMO_CHECKPOINT_TEMPLATE
EPOCHS = 3.0
"""Expected passes over a run's data before early stopping (the compute estimate's default)."""


def size_of(n: float) -> str:
    """The PRESETS name whose N is ``n`` (within 1e-6), else ''."""
    return next((name for name in PRESETS if math.isclose(preset_n(name), n, rel_tol=1e-6)), "")


def command_for(c: Candidate, checkpoint_template: str = CHECKPOINT_TEMPLATE, seed: int = 0) -> str:
    """The ``transfer-laws`` command(s) that train a candidate (a new size: pretrain and register first)."""
    size = c.label or size_of(c.n_params) or f"<size with N={c.n_params:.3g}>"
    checkpoint = checkpoint_template.format(size=size)
    seeds = f" --seed {seed} --train.seed {seed}" if seed else ""

    def one(role: str, tokens: float) -> str:
        if role == ROLE_SCRATCH:
            return (f"transfer-laws scratch --preset {size} --d-f-tokens {int(tokens)} --tokenizer-from {checkpoint}"
                    f"{seeds}")
        return f"transfer-laws finetune --from {checkpoint} --d-f-tokens {int(tokens)}{seeds}"

    parts = []
    if c.pretrain_tokens > 0:
        name, alias = registered_name(checkpoint)
        parts.append(f"transfer-laws pretrain --preset {size} --tokens {int(c.pretrain_tokens)} "
                     f"--register-as {name} --alias {alias}")
    parts.append(one(c.role, c.d_f_tokens))
    parts += [one(role, tokens) for role, tokens in c.bundle]
    return " && ".join(parts)


def registered_name(checkpoint: str) -> tuple[str, str]:
    """(name, alias) of ``models:/name@alias``."""
    body = checkpoint.removeprefix("models:/")
    name, _, alias = body.partition("@")
    return name, alias or "champion"


MIN_TOKENS = 256
"""No candidate trains on fewer tokens than this (two 128-token windows): below it a run measures its first steps,
not a data budget, and shrink per FLOP would walk D_F down without end."""


MAX_SEEDS_PER_CELL = 4
"""No candidate repeats a cell that already has this many runs. A repeat averages the cell's seed noise (four seeds
halve it), not the error the cell shares with every seed (the scratch curve at its loss, the law's form there);
demo --full's mix loop, uncapped, trained one cheap cell 29 times while alpha's interval widened."""


def _around(values: Sequence[float], below: float, above: float) -> list[float]:
    """The measured values and one step below and above their range (factors ``below`` and ``above``), never
    below ``MIN_TOKENS``."""
    ordered = sorted(set(values))
    grid = [ordered[0] / below, *ordered, ordered[-1] * above, ordered[-1] * above**2]
    return sorted({round(v) for v in grid if v >= MIN_TOKENS})


def law_candidates(law: TransferLaw, *, checkpoint_template: str = CHECKPOINT_TEMPLATE, epochs: float = EPOCHS,
                   new_sizes: bool = True) -> list[Candidate]:
    """Every kind of run a team could launch next, around the law's own runs: fine-tunes at each fine-tuned size
    over the measured D_F and one step beyond (a measured cell is a repeat with a new seed), scratch runs at each
    size over the measured D and larger, and the presets just below and above the measured sizes as new sizes
    (pretraining at 20 tokens per parameter, scratch runs over the measured D and fine-tunes at the measured D_F)."""
    # N and D are counts: rounded, so that a size read back from the scratch model's logs (12767.999...) is the
    # same size as the fine-tunes' 12768, not a second row of identical candidates.
    ft_n = sorted({float(round(p.n)) for p in law.points})
    d_fs = [float(round(p.d_f)) for p in law.points]
    s_n = sorted({float(round(v)) for v in np.exp(law.scratch.log_n)}) if law.scratch.log_n.size else []
    s_d = [float(round(v)) for v in np.exp(law.scratch.log_d)]
    if not ft_n or not d_fs:
        return []
    d_f_grid = _around(d_fs, 2.0, 2.0) or [MIN_TOKENS]
    d_grid = _around(s_d, 2.0, 2.0) if s_d else d_f_grid
    seeds = Counter([(ROLE_FINETUNE, n, d) for n, d in zip((float(round(p.n)) for p in law.points), d_fs,
                                                               strict=True)]
                    + [(ROLE_SCRATCH, float(round(n)), d) for n, d in zip(np.exp(law.scratch.log_n), s_d,
                                                                         strict=True)])

    def open_cell(role: str, n: float, d: float) -> bool:
        return seeds[(role, n, float(round(d)))] < MAX_SEEDS_PER_CELL

    out = []
    for n in ft_n:
        label = size_of(n)
        out += [Candidate(n, d, ROLE_FINETUNE, epochs, label) for d in d_f_grid if open_cell(ROLE_FINETUNE, n, d)]
    for n in sorted(set(ft_n) | set(s_n)):
        label = size_of(n)
        out += [Candidate(n, d, ROLE_SCRATCH, epochs, label) for d in d_grid if open_cell(ROLE_SCRATCH, n, d)]
    if new_sizes:
        known = sorted(set(ft_n) | set(s_n))
        by_n = sorted((preset_n(name), name) for name in PRESETS)
        lower = [x for x in by_n if x[0] < known[0] * (1 - 1e-6)][-1:]
        upper = [x for x in by_n if x[0] > known[-1] * (1 + 1e-6)][:1]
        for n, name in lower + upper:
            bundle = tuple([(ROLE_SCRATCH, d) for d in sorted(set(s_d))]
                           + [(ROLE_FINETUNE, d) for d in sorted(set(d_fs))[1:]])
            out.append(Candidate(float(n), min(d_fs), ROLE_FINETUNE, epochs, name,
                                 pretrain_tokens=PRETRAIN_TOKENS_PER_PARAM * n, bundle=bundle))
    # A repeat's command trains the cell's next seed (seeds 0, 1, ... as the loop numbers them), not seed 0 again.
    return [replace(c, command=command_for(c, checkpoint_template,
                                           seed=seeds[(c.role, c.n_params, float(round(c.d_f_tokens)))]))
            for c in out]


def within_corpus(pool: Sequence[Candidate], limit: float) -> list[Candidate]:
    """The candidates whose fine-tunes and scratch runs all train on fewer than ``limit`` tokens: one more than the
    target's train split holds (``split_limit``), or the least a run the corpus could not supply asked for."""
    return [c for c in pool if max([c.d_f_tokens, *(tokens for _, tokens in c.bundle)]) < limit]


def split_limit(split_tokens: int | None) -> float:
    """``within_corpus``'s limit for a train split of ``split_tokens`` tokens (inf when its size is not known)."""
    return math.inf if split_tokens is None else split_tokens + 1


def wall_time(client: MlflowClient, law: TransferLaw, epochs: float = EPOCHS, limit: int = 50) -> WallTime:
    """The wall-time model of the machines that trained the law's runs: seconds = per run + per FLOP x compute
    (6 N tokens x ``epochs``), least squares over up to ``limit`` of its finished fine-tunes, both terms kept
    non-negative. One size of run only, or a fit that gives a negative term, leaves the other term alone: the
    average rate with no fixed cost, or the average duration with no rate. NaN when no run can be read."""
    seconds: list[float] = []
    flops: list[float] = []
    for p in list(law.points)[:limit]:
        try:
            info = client.get_run(p.run_id).info
        except Exception:  # a run deleted since the fit, or a store that cannot be reached: no estimate from it
            continue
        if info.start_time and info.end_time and info.end_time > info.start_time:
            seconds.append((info.end_time - info.start_time) / 1000)
            flops.append(compute_flops(p.n, p.d_f, epochs))
    if not seconds:
        return WallTime()
    x, y = np.asarray(flops), np.asarray(seconds)
    if len(set(flops)) >= 2:
        rate = float(np.cov(x, y, bias=True)[0, 1] / np.var(x))
        fixed = float(y.mean() - rate * x.mean())
        if rate >= 0 and fixed >= 0:
            return WallTime(fixed, rate)
        if rate < 0:
            return WallTime(float(y.mean()), 0.0)
    return WallTime(0.0, float((x * y).sum() / (x * x).sum()))


class AdviceRow(TypedDict):
    """One candidate as ``predict --next --json`` prints it."""

    rank: int
    role: str
    kind: str
    label: str
    N: float
    D_F_tokens: float
    PFLOP: float
    minutes: float | None
    alpha_halfwidth: float
    beta_halfwidth: float
    identified: float
    shrink: float
    score: float
    note: str
    why: str
    command: str


def advice_rows(ranked: Sequence[Advice]) -> list[AdviceRow]:
    """Plain rows (``predict --next --json``): one dict per candidate, best first, with why it is advised."""
    return [{"rank": i, "role": a.candidate.role, "kind": a.kind, "label": a.candidate.label,
             "N": a.candidate.n_params, "D_F_tokens": a.candidate.d_f_tokens, "PFLOP": a.flops / 1e15,
             "minutes": a.seconds / 60 if math.isfinite(a.seconds) else None,
             "alpha_halfwidth": a.alpha_halfwidth, "beta_halfwidth": a.beta_halfwidth,
             "identified": a.identified, "shrink": a.shrink, "score": a.score, "note": a.note,
             "why": why_advised(a), "command": a.candidate.command}
            for i, a in enumerate(ranked, 1)]


def why_advised(advice: Advice) -> str:
    """What the run adds to the fit and what that buys, or (the advice's note) why it does not help."""
    if advice.note:
        return advice.note
    kind = advice.kind or advice.candidate.role
    what = {"repeat": "the same cell with a new seed (averages its noise)",
            "scratch": (f"a scratch point ({advice.new_points} more fine-tune(s) usable)" if advice.new_points
                        else "a scratch point on the D_E curve"),
            "scratch repeat": "a repeated scratch point (the fitter keeps the first: adds nothing)",
            "new size": "a new size: pretraining, its scratch curve and fine-tunes"}.get(kind,
                                                                                          "one more fine-tune point")
    return f"{what}: alpha and beta intervals {advice.shrink:.0%} narrower"


def format_advice(ranked: Sequence[Advice], top: int = 10) -> str:
    """A fixed-width table of the best ``top`` candidates: cost, effect and why, best value for compute first."""
    header = (f"{'#':>2} {'kind':10} {'size':8} {'N':>6} {'D':>6} {'cost':>10} {'wall':>8} {'+-alpha':>7} "
              f"{'+-beta':>7}  why")
    lines = [header]
    for row in advice_rows(ranked[:top]):
        wall = "-" if row["minutes"] is None else f"{row['minutes']:.1f}m"
        lines.append(f"{row['rank']:>2} {row['kind'][:10]:10} {row['label'][:8]:8} {_short(row['N']):>6} "
                     f"{_short(row['D_F_tokens']):>6} {_short(row['PFLOP'] * 1e15) + 'FLOP':>10} {wall:>8} "
                     f"{row['alpha_halfwidth']:7.3f} {row['beta_halfwidth']:7.3f}  {row['why']}")
    return "\n".join(lines)


def format_plan(plan: Plan, target: Target, top: int = 5) -> str:
    """The plan's total compute to reach the target and the commands of its first runs."""
    wall = f", about {plan.seconds / 60:.0f} min here" if math.isfinite(plan.seconds) else ""
    beta = "" if not target.beta_excludes_0 else " and beta's interval excluding 0"
    if plan.reached and not plan.steps:
        return f"alpha +-{target.alpha_halfwidth:g}{beta} (every draw identified, no warning): already met"
    if not plan.steps:
        return (f"to reach alpha +-{target.alpha_halfwidth:g}{beta} (every draw identified, no warning): no candidate "
                f"run is predicted to narrow the intervals (now alpha +-{plan.alpha_halfwidth:.3g}, beta "
                f"[{plan.beta_interval[0]:.3g}, {plan.beta_interval[1]:.3g}]); runs beyond the candidates (larger "
                "sizes, a wider D_F span, larger scratch D) are the way on")
    head = (f"to reach alpha +-{target.alpha_halfwidth:g}{beta} (every draw identified, no warning): "
            f"{len(plan.steps)} run(s), {_short(plan.flops)}FLOP in all (6 N tokens){wall}")
    if not plan.reached:
        head += (f"; NOT reached within the candidates (predicted alpha +-{plan.alpha_halfwidth:.3g}, beta "
                 f"[{plan.beta_interval[0]:.3g}, {plan.beta_interval[1]:.3g}])")
    lines = [head]
    for i, step in enumerate(plan.steps[:top], 1):
        lines.append(f"  {i}. {step.kind}: {step.candidate.command or step.candidate}")
    if len(plan.steps) > top:
        lines.append(f"  ... {len(plan.steps) - top} more (predict --next --json lists them)")
    return "\n".join(lines)


def _short(value: float) -> str:
    """1.3e4 -> 13k, 2.5e6 -> 2.5M: counts people read at a glance."""
    for scale, suffix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def adaptive_order(fit: Callable[[list[ResultT]], TransferLaw], cells: list[CellT], candidates: list[Candidate],
                   train: Callable[[CellT], ResultT], *, start: int, tolerance: float, max_runs: int,
                   log: Callable[[str], None] = lambda _: None,
                   on_choice: Callable[[CellT, str], None] = lambda _cell, _reason: None) -> list[ResultT]:
    """Train cells in advice order until alpha's 95% half-width <= ``tolerance`` (with no fit warning, e.g. too few
    points for a reliable bootstrap) or ``max_runs`` runs.

    ``fit(results)`` returns a law (or raises ValueError while too few points exist); ``train(cell)`` returns the
    run's result. The first ``start`` runs go to a space-filling seed (the corners of the grid) so that a law can be
    fitted at all; after that each run is the best-ranked remaining candidate. No more than ``max_runs`` runs are
    trained, seeds included. ``on_choice(cell, reason)`` hears why each cell was chosen, just before it is trained.
    Returns the results in run order.
    """
    remaining = list(range(len(cells)))
    results: list[ResultT] = []
    seeds = _seed_order(candidates)[:min(start, max_runs)]
    for k, i in enumerate(seeds, 1):
        what = "a scratch curve point" if candidates[i].role == ROLE_SCRATCH else "a fine-tune nearest a grid corner"
        on_choice(cells[i], f"seed {k} of {len(seeds)}: {what} (space-filling start, before the advice ranks)")
        results.append(train(cells[i]))
        remaining.remove(i)
    while remaining and len(results) < max_runs:
        try:
            law = fit(results)
        except ValueError as exc:  # too few usable points yet: take the next seed-ordered cell
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            log(f"adaptive: no law yet ({first_line}); taking the next cell")
            pick = _seed_order([candidates[i] for i in remaining])[0]
            chosen = remaining[pick]
            reason = f"no law yet after {len(results)} runs ({first_line}): next cell in seed order"
        else:
            width = alpha_halfwidth(law)
            log(f"adaptive: {len(results)} runs, alpha = {law.alpha:.3f} ± {width:.3f}")
            if width <= tolerance and not law.warnings:  # a warned interval is not trusted
                break
            ranked = rank_next_runs(law, [candidates[i] for i in remaining])
            top = ranked[0]
            chosen = next(i for i in remaining if candidates[i] is top.candidate)
            reason = (f"advice: rank 1 of {len(ranked)} remaining, shrinks the alpha+beta half-widths by "
                      f"{top.shrink:.1%} for {top.flops / 1e15:.3g} PFLOP (alpha = {law.alpha:.3f} +- {width:.3f} "
                      f"after {len(results)} runs){f'; {top.note}' if top.note else ''}")
        on_choice(cells[chosen], reason)
        results.append(train(cells[chosen]))
        remaining.remove(chosen)
    return results


def _seed_order(candidates: Sequence[Candidate]) -> list[int]:
    """Scratch first (they make fine-tunes usable), then fine-tunes from the corners of (ln D_F, ln N) inwards."""
    if not candidates:
        return []
    ln_n = [math.log(c.n_params) for c in candidates]
    ln_d = [math.log(c.d_f_tokens) for c in candidates]
    span_n, span_d = (max(ln_n) - min(ln_n)) or 1.0, (max(ln_d) - min(ln_d)) or 1.0
    corners = [(a, b) for a in (min(ln_n), max(ln_n)) for b in (min(ln_d), max(ln_d))]

    def key(i: int) -> tuple[int, float, int]:
        dist = min(((ln_n[i] - a) / span_n) ** 2 + ((ln_d[i] - b) / span_d) ** 2 for a, b in corners)
        return (0 if candidates[i].role == ROLE_SCRATCH else 1, dist, i)

    return sorted(range(len(candidates)), key=key)
