"""The pin loop: fit -> advise -> train the best run -> refit, until the law is determined or the budget is spent.

Pure control flow over three things it is given (so the same loop runs on real runs and on synthetic truths):
``fit()`` returns the law from every finished run (a ``TransferLaw``), ``candidates(law)`` the runs a team could
launch next (``registry.advice.Candidate``), and a ``RunQueue``: the shared list of chosen runs (an Optuna study in
``plugin/sweeps/pin.py``), from which any number of workers pop and train. A worker first trains what is already waiting
(a crashed trial re-enqueued, or a run another worker chose), then refits and asks the advice for the plan to the
target; it claims the first planned run nobody holds (a measured cell again means a new seed) and trains it.

The target holds when alpha's 95% half-width is at most the target, beta's interval excludes 0 (if asked), every
bootstrap draw identifies the law and the fit carries no warning. The budget is compute (6 N tokens, runs of this
loop only) and/or minutes of training (the trials' own durations, so a resumed loop counts what it already spent).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Protocol

import numpy as np

from transfer_laws.registry.fit.advice import (
    MIN_SHRINK,
    Advice,
    Candidate,
    Plan,
    Target,
    WallTime,
    alpha_halfwidth,
    candidate_flops,
    compute_flops,
    plan_to_target,
    rank_next_runs,
    scratch_model_disputed,
)
from transfer_laws.registry.schema import ROLE_PRETRAIN, ROLE_SCRATCH

if TYPE_CHECKING:
    from transfer_laws.registry.fit import TransferLaw

EXIT_PINNED = 0
EXIT_BUDGET = 3
"""The budget was spent before the target held (the report says what is missing and the predicted cost)."""
EXIT_STUCK = 4
"""No candidate run is predicted to help: the candidates (sizes, D_F span, scratch D) must widen."""


@dataclass(frozen=True)
class PinRun:
    """One run the loop trains: a fine-tune, a scratch run, or the pretraining of a new size."""

    role: str
    """finetune, scratch or pretrain."""
    size: str
    """Preset name (the model shape; '' where N alone names it, e.g. synthetic runs)."""
    n_params: float
    """N, non-embedding parameters."""
    tokens: int
    """D_F (fine-tune), D (scratch) or the pretraining budget, in tokens."""
    seed: int = 0
    """Seed of data order and initialisation: a repeat of a measured cell takes the next one."""

    def cell(self) -> tuple[str, str, int]:
        """What makes two runs measure the same thing (the seed aside)."""
        return (self.role, self.size or f"{self.n_params:.6g}", int(self.tokens))


@dataclass(frozen=True)
class Budget:
    """What the loop may spend; either limit may be infinite."""

    flops: float = math.inf
    minutes: float = math.inf
    deadline: float = math.inf
    """``time.monotonic()`` after which no run starts: a wall clock for this process (``demo --full``'s minutes, which
    the refits between runs spend too), beside ``minutes`` of training, which a resumed loop carries over."""

    def left(self, spent: Spent) -> str:
        """'' while there is budget left, else which limit is spent."""
        if spent.flops >= self.flops:
            return f"compute budget spent ({spent.flops:.3g} of {self.flops:.3g} FLOP)"
        if spent.minutes >= self.minutes:
            return f"time budget spent ({spent.minutes:.1f} of {self.minutes:g} min)"
        if time.monotonic() >= self.deadline:
            return "wall-clock budget spent (training and refits)"
        return ""


@dataclass(frozen=True)
class Spent:
    """What the loop's finished runs cost."""

    flops: float = 0.0
    minutes: float = 0.0
    runs: int = 0


class RunQueue(Protocol):
    """The chosen runs, shared by the workers (implemented on an Optuna study by ``plugin/sweeps/pin.py``)."""

    def held(self) -> list[PinRun]:
        """Every run waiting, running or finished (so nobody chooses it again)."""

    def spent(self) -> Spent:
        """Compute and minutes of the finished runs."""

    def claim(self, runs: Sequence[PinRun], reason: str, flops: Sequence[float]) -> None:
        """Put runs on the queue, in order, each tagged with why it was chosen and its compute."""

    def work_one(self) -> bool:
        """Pop one waiting run and train it (never a run another worker holds); False when none was waiting."""


@dataclass
class PinOutcome:
    """How the loop ended."""

    exit_code: int
    """EXIT_PINNED, EXIT_BUDGET or EXIT_STUCK."""
    law: TransferLaw
    """The last fitted law."""
    spent: Spent
    """What the loop's runs cost."""
    missing: list[str] = field(default_factory=list)
    """What the target still lacks (empty when pinned)."""
    plan: Plan | None = None
    """The advice's plan to finish (runs and predicted compute); None when pinned."""
    reason: str = ""
    """One line: pinned, which budget is spent, or why no run helps."""


def missing_for(law: TransferLaw, target: Target) -> list[str]:
    """What keeps ``law`` from the target (empty: pinned)."""
    out = []
    low, high = law.intervals.get("alpha", (math.nan, math.nan))
    half = (high - low) / 2
    if not half <= target.alpha_halfwidth:
        out.append(f"alpha +-{half:.3g} (target +-{target.alpha_halfwidth:g})")
    b_low, b_high = law.intervals.get("beta", (math.nan, math.nan))
    if target.beta_excludes_0 and not (b_low > 0 or b_high < 0):
        out.append(f"beta's interval [{b_low:.3g}, {b_high:.3g}] includes 0")
    draws = law.draws.get("alpha", np.empty(0))
    share = float(np.isfinite(draws).mean()) if draws.size else 0.0
    if share < 1.0:
        out.append(f"{share:.1%} of bootstrap draws identify the law (target: all)")
    out += [f"warning: {w}" for w in law.warnings]
    return out


def progress_line(law: TransferLaw, spent: Spent, plan: Plan | None) -> str:
    """One line of progress: the intervals now, what was spent and the predicted compute still to go."""
    a, b = law.intervals["alpha"], law.intervals["beta"]
    if plan is None:
        rest = ""
    elif not plan.steps:
        rest = f"; no candidate run is predicted to narrow the intervals by {MIN_SHRINK:.0%} or more"
    else:
        rest = (f"; predicted to go: {len(plan.steps)} run(s), {plan.flops:.3g} FLOP"
                + ("" if plan.reached else " (target not reached by the candidates)"))
    return (f"pin: {spent.runs} run(s), {spent.flops:.3g} FLOP, {spent.minutes:.1f} min; alpha {law.alpha:.3f} "
            f"[{a[0]:.3f}, {a[1]:.3f}], beta {law.beta:.3f} [{b[0]:.3f}, {b[1]:.3f}]{rest}")


def runs_of(c: Candidate, held: Sequence[PinRun], size: str = "") -> list[PinRun]:
    """The runs that train a candidate (a new size: its pretraining first), each at the next free seed of its cell."""
    size = size or c.label
    wanted = ([(ROLE_PRETRAIN, c.pretrain_tokens)] if c.pretrain_tokens > 0 else []) + [(c.role, c.d_f_tokens)]
    wanted += list(c.bundle)
    out: list[PinRun] = []
    for role, tokens in wanted:
        run = PinRun(role, size, c.n_params, int(round(tokens)))
        seeds = {r.seed for r in [*held, *out] if r.cell() == run.cell()}
        out.append(PinRun(role, size, c.n_params, run.tokens, seed=next(s for s in range(len(seeds) + 1)
                                                                          if s not in seeds)))
    return out


def run_flops(run: PinRun, epochs: float) -> float:
    """Compute charged for a run: 6 N tokens, times the expected epochs for fine-tunes and scratch runs (the
    advice's own convention, so the budget and the plan count alike)."""
    return compute_flops(run.n_params, run.tokens, 1.0 if run.role == ROLE_PRETRAIN else epochs)


def narrowest_per_flop(law: TransferLaw, pool: Sequence[Candidate], target: Target, draws: int,
                       wall: WallTime) -> list[Advice]:
    """The run that narrows what the target still lacks most per FLOP, ignoring how far the target asks: [] when
    none narrows anything.

    The plan to the target finds no step when the advice predicts the target met although the fit misses it (a
    warning the advice does not model, such as a competing scratch model that disagrees; a beta interval that is
    lopsided about beta), or when every run's predicted gain above the target is below ``MIN_SHRINK``. More data
    where it narrows the missing intervals most per FLOP (or, when no run narrows them by ``MIN_SHRINK``, most) is
    then the best bet, and the loop stops only when no run narrows anything."""
    alpha_short = alpha_halfwidth(law) > target.alpha_halfwidth
    b_low, b_high = law.intervals["beta"]
    beta_short = target.beta_excludes_0 and not (b_low > 0 or b_high < 0)
    # Weigh the intervals the target still needs; with neither short (draws or warnings left), both.
    weights = (float(alpha_short), float(beta_short)) if alpha_short or beta_short else (1.0, 1.0)
    if not (alpha_short or beta_short) and scratch_model_disputed(law):
        # Fine-tunes narrow the intervals but cannot say which scratch model holds; only a new scratch point can (a
        # loop of cheap fine-tune repeats would run to its budget with the warning still there). Its effect on
        # the intervals may be small: what it is for is the model choice.
        ranked = rank_next_runs(law, [c for c in pool if c.role == ROLE_SCRATCH], draws=draws, wall=wall)
        return [a for a in ranked if a.kind == "scratch"][:1]
    ranked = rank_next_runs(law, pool, alpha_weight=weights[0], beta_weight=weights[1], draws=draws, wall=wall,
                            min_shrink=MIN_SHRINK)
    if not ranked or ranked[0].shrink <= 0:
        # No run narrows them by MIN_SHRINK: the one that narrows them most, whatever it costs (per FLOP, the
        # cheapest repeat would win again and again with a gain lost in the simulation's noise).
        ranked = rank_next_runs(law, pool, alpha_weight=weights[0], beta_weight=weights[1], per_compute=False,
                                draws=draws, wall=wall)
    return [a for a in ranked if a.shrink > 0][:1]


CUTOFF_NOTE = "checks the low-data cutoff"
"""How a run ``cutoff_scratch_run`` chose says why (its note starts so; the run's reason repeats it)."""


def cutoff_scratch_run(law: TransferLaw, pool: Sequence[Candidate], draws: int, wall: WallTime) -> list[Advice]:
    """When no run narrows the intervals but the fit warns that the low-data cutoff is unchecked at some N (its
    scratch curve still falls at its largest D), the cheapest scratch candidate beyond that largest D at such an N:
    what the warning asks for, whether or not the intervals move. [] when the cutoff is checked or no candidate
    reaches further."""
    low_data = law.checks.get("low_data")
    unchecked = low_data["unchecked_n"] if low_data else []
    scratch_n = np.exp(law.scratch.log_n) if law.scratch.log_n.size else np.empty(0)
    scratch_d = np.exp(law.scratch.log_d) if law.scratch.log_d.size else np.empty(0)

    def beyond(c: Candidate) -> str | None:
        for n in unchecked:
            if c.role == ROLE_SCRATCH and not c.pretrain_tokens and math.isclose(c.n_params, n, rel_tol=1e-6):
                at_n = scratch_d[np.isclose(scratch_n, n, rtol=1e-6)]
                if not at_n.size or c.d_f_tokens > at_n.max() * (1 + 1e-6):
                    return f"{CUTOFF_NOTE} at N = {n:.3g} (its scratch curve still falls at its largest D)"
        return None

    options = [(candidate_flops(c), c, why) for c in pool if (why := beyond(c))]
    if not options:
        return []
    _, cheapest, why = min(options, key=lambda o: o[0])
    ranked = rank_next_runs(law, [cheapest], draws=draws, wall=wall)
    return [replace(a, note=why) for a in ranked[:1]]


def pin(fit: Callable[[], TransferLaw], candidates: Callable[[TransferLaw], list[Candidate]], queue: RunQueue,
        target: Target, budget: Budget, *, draws: int = 200, max_plan: int = 30,
        log: Callable[[str], None] = lambda _: None, wall: Callable[[TransferLaw], WallTime] = lambda _: WallTime(),
        max_iterations: int = 1000, show_plan: bool = True) -> PinOutcome:
    """Fit, advise, train, refit until ``target`` holds (exit 0) or ``budget`` is spent (EXIT_BUDGET) or no run
    helps (EXIT_STUCK). ``show_plan=False`` plans to the target only when the loop ends (each step then costs one
    ranking of the candidates instead of a whole greedy plan)."""
    law, plan = None, None
    for _ in range(max_iterations):
        while queue.work_one():  # what is waiting first: a crashed run's retry, or a run another worker chose
            pass
        law = fit()
        spent = queue.spent()
        missing = missing_for(law, target)
        if not missing:
            log(progress_line(law, spent, None) + " - pinned")
            return PinOutcome(EXIT_PINNED, law, spent, reason="target reached")
        pool = candidates(law)
        spent_reason = budget.left(spent)

        here = wall(law)
        full_plan = partial(plan_to_target, law, pool, target, max_steps=max_plan, draws=draws, wall=here)
        # The whole plan is for people (progress, the report at the end); choosing needs its first step only.
        plan = full_plan() if show_plan or spent_reason else plan_to_target(
            law, pool, target, max_steps=1, draws=draws, wall=here)
        log(progress_line(law, spent, plan if show_plan else None))
        if spent_reason:
            return PinOutcome(EXIT_BUDGET, law, spent, missing, plan, spent_reason)
        if not plan.steps:
            steps = narrowest_per_flop(law, pool, target, draws, here) or cutoff_scratch_run(law, pool, draws, here)
            plan = replace(plan, steps=steps, flops=sum(a.flops for a in steps))
        if not plan.steps:
            plan = plan if show_plan else full_plan()
            return PinOutcome(EXIT_STUCK, law, spent, missing, plan,
                              "no candidate run is predicted to help: widen the sizes, D_F span or scratch D")
        held = queue.held()
        step = plan.steps[0]
        if budget.flops < math.inf and spent.flops + candidate_flops(step.candidate) > budget.flops:
            return PinOutcome(EXIT_BUDGET, law, spent, missing, plan if show_plan else full_plan(),
                              f"the next run ({candidate_flops(step.candidate):.3g} FLOP) does not fit the compute "
                              f"left ({budget.flops - spent.flops:.3g} FLOP)")
        runs = runs_of(step.candidate, held)
        why = f"; it {step.note}" if step.note.startswith(CUTOFF_NOTE) else ""
        reason = (f"pin: {step.kind} chosen by the advice (rank 1 of the plan's {len(plan.steps)} runs to "
                  f"alpha +-{target.alpha_halfwidth:g}{why}): predicted alpha +-{step.alpha_halfwidth:.3g}, beta "
                  f"+-{step.beta_halfwidth:.3g} after it, for {step.flops:.3g} FLOP; before it: "
                  + "; ".join(missing))
        queue.claim(runs, reason, [run_flops(r, step.candidate.epochs) for r in runs])
    assert law is not None
    return PinOutcome(EXIT_STUCK, law, queue.spent(), missing_for(law, target), plan, "iteration limit reached")


def format_outcome(outcome: PinOutcome, target: Target) -> str:
    """The loop's last words: pinned, or what is missing and the advice's predicted cost to finish."""
    if outcome.exit_code == EXIT_PINNED:
        return (f"pinned: {progress_line(outcome.law, outcome.spent, None).removeprefix('pin: ')}\n"
                f"  {outcome.law.exchange_headline()}")
    lines = [f"not pinned ({outcome.reason}): {progress_line(outcome.law, outcome.spent, None).removeprefix('pin: ')}"]
    lines += [f"  missing: {m}" for m in outcome.missing]
    if outcome.plan is not None and not outcome.plan.steps:
        lines.append("  to finish: no candidate run (fine-tunes and scratch runs around the law's own, one new size "
                     "each side) is predicted to shrink alpha's interval; runs beyond them (larger sizes, a wider D_F "
                     "span, larger scratch D) are the way on")
    elif outcome.plan is not None:
        plan = outcome.plan
        wall = f", about {plan.seconds / 60:.0f} min here" if math.isfinite(plan.seconds) else ""
        verdict = "reaches" if plan.reached else "does NOT reach"
        lines.append(f"  to finish: the advice's plan {verdict} alpha +-{target.alpha_halfwidth:g} with "
                     f"{len(plan.steps)} more run(s), {plan.flops:.3g} FLOP (6 N tokens){wall}")
        lines += [f"    {i}. {s.kind}: {s.candidate.command or s.candidate}" for i, s in enumerate(plan.steps[:5], 1)]
    return "\n".join(lines)


