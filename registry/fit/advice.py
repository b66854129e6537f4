"""Next-run advice from the fit's own error model: which run shrinks alpha's and beta's 95% intervals most per FLOP.

Pure numerics (numpy in, dataclasses out, no MLflow). A candidate is valued by re-running the version's own
uncertainty model (the parametric bootstrap of ``registry/fit/_parametric.py``: both noise sources, scratch losses
and fine-tune losses, propagated through D_E) on the design *with the run added*, its loss placed where the law and
the scratch model predict it. So the advice sees what the intervals see:

- a fine-tune's D_E error is its loss error divided by the scratch curve's slope there, and the scratch curves'
  own error moves every D_E at that N;
- a scratch run tightens its curve (or the global scratch form), can make excluded fine-tunes usable (a curve that
  now reaches their loss) and can check the low-data cutoff (a curve that flattens);
- a repeat of a measured cell with a new seed is one more point at the same design row;
- a new size comes with its pretraining and the scratch runs and fine-tunes it needs (a *bundle*).

The simulated "now" (no run added) is computed by the same code, with the same random numbers, as every "after";
the predicted half-width is the version's own half-width times after / now, so a run that adds nothing predicts
exactly the version's interval. Candidates share random numbers, so their differences are not bootstrap noise.

Compute convention: ``C = 6 * N * tokens`` FLOPs, N the non-embedding parameters, tokens = D (or D_F) x epochs
(the expected passes over the run's data under early stopping); a new size adds its pretraining, 6 * N * tokens
pretrained. Wall time is a fixed cost per run (start-up, data, evaluations) plus compute times seconds per
FLOP, both measured on the runs a law was fitted on (``WallTime``), when given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from transfer_laws.registry.schema import ROLE_FINETUNE, ROLE_SCRATCH

from ._bootstrap import law_draws_in_blocks
from ._fit import MIN_POINTS, _classify, _cutoff_unmeasured, _model_choice_warnings
from ._law import design as law_design
from ._model import ScratchModel, TransferLaw
from ._parametric import log_d_e_sampler
from ._scratch import group_by_n, match_n, monotone_curve

Z95 = 1.96
DRAWS = 400
"""Bootstrap draws per simulated design (common random numbers across candidates)."""
WARNING_VALUE = 0.5
"""Shrink credited per fit warning a run removes (the pin target needs a fit without warnings)."""
BETA_MARGIN = 0.8
"""With a target that beta exclude 0, beta's half-width is worth shrinking down to this fraction of |beta|."""
IDENTIFIED = 0.999
"""Share of draws that must identify the law for the target to count as reached ("every draw", up to rounding)."""
MIN_SHRINK = 0.02
"""Smallest predicted shrink the plan to a target counts: below it a run's gain is within the simulation's own noise
(about 2% of a half-width for one run between designs on common random numbers), and shrink per FLOP would take
cheap repeats that each narrow alpha by a fraction of a percent, one after another, without end."""


@dataclass(frozen=True)
class Candidate:
    """One run (or, for a new size, one bundle of runs) that could be trained next."""

    n_params: float
    """N, non-embedding parameters."""
    d_f_tokens: float
    """D_F in tokens (for a scratch run: its dataset size D)."""
    role: str = ROLE_FINETUNE
    """``"finetune"`` or ``"scratch"``."""
    epochs: float = 1.0
    """Expected passes over the data before early stopping (compute = 6 * N * tokens * epochs)."""
    label: str = ""
    """Free text carried into the advice (e.g. the preset name)."""
    pretrain_tokens: float = 0.0
    """Tokens of pretraining this run needs first (> 0: a size with no checkpoint yet, its cost counted)."""
    bundle: tuple[tuple[str, float], ...] = ()
    """More runs at the same N that come with it, (role, tokens) each: a new size's scratch runs and fine-tunes."""
    command: str = ""
    """The command that trains it (printed by the advice)."""


@dataclass(frozen=True)
class Advice:
    """What one candidate would buy."""

    candidate: Candidate
    """The run."""
    flops: float
    """Its compute: 6 * N * tokens * epochs, pretraining and bundled runs included."""
    alpha_halfwidth: float
    """Predicted half-width of alpha's 95% interval after the run."""
    beta_halfwidth: float
    """Predicted half-width of beta's 95% interval after the run."""
    shrink: float
    """Mean relative reduction of the alpha and beta half-widths, plus the gain in identified draws (0: no help)."""
    score: float
    """shrink per PFLOP (1e15 FLOPs): the ranking key."""
    new_points: int
    """Fine-tune points the run adds to the fit (itself, or those a scratch run makes usable)."""
    identified: float = 1.0
    """Predicted share of bootstrap draws that identify the law after the run."""
    kind: str = ""
    """``fine-tune``, ``repeat`` (a measured cell, new seed), ``scratch``, ``scratch repeat`` or ``new size``."""
    seconds: float = float("nan")
    """Estimated wall time on this machine (NaN without a measured rate)."""
    note: str = ""
    """Why the run helps little or not at all."""
    warnings: int = 0
    """Predicted fit warnings left after the run (3 points only, two sizes only, low-data cutoffs unchecked)."""


@dataclass(frozen=True)
class Plan:
    """Runs in the order the advice would train them until the target is predicted to hold."""

    steps: list[Advice]
    """Each step's advice, given the steps before it."""
    reached: bool
    """Whether the last step is predicted to meet the target."""
    flops: float
    """Total compute of the steps."""
    seconds: float
    """Total estimated wall time (NaN without a measured rate)."""
    alpha_halfwidth: float
    """Predicted alpha half-width after the last step."""
    beta_interval: tuple[float, float]
    """Predicted beta interval after the last step (centred on the version's beta)."""


@dataclass(frozen=True)
class Target:
    """When the law counts as pinned."""

    alpha_halfwidth: float
    """Alpha's 95% half-width at most this."""
    beta_excludes_0: bool = True
    """Beta's interval must exclude 0."""


def compute_flops(n_params: float, d_f_tokens: float, epochs: float = 1.0) -> float:
    """Training compute ``6 * N * tokens * epochs`` FLOPs (N: non-embedding parameters)."""
    return 6.0 * float(n_params) * float(d_f_tokens) * float(epochs)


@dataclass(frozen=True)
class WallTime:
    """What a run costs in wall time where a law's runs were trained: a fixed cost per run plus seconds per FLOP
    (a rate alone makes small runs look free: on 2 CPU cores a tiny run still takes tens of seconds to start,
    load its data and evaluate). NaN when nothing was measured."""

    per_run_s: float = float("nan")
    """Seconds every run costs whatever its size."""
    per_flop_s: float = float("nan")
    """Seconds per FLOP of the compute convention (6 N tokens)."""

    def seconds(self, flops: float, runs: int = 1) -> float:
        """Predicted wall seconds of ``runs`` runs that compute ``flops`` FLOPs in all."""
        return runs * self.per_run_s + flops * self.per_flop_s


def candidate_runs(c: Candidate) -> int:
    """How many runs a candidate launches: itself, its bundle and its pretraining."""
    return 1 + len(c.bundle) + (1 if c.pretrain_tokens > 0 else 0)


def candidate_flops(c: Candidate) -> float:
    """A candidate's whole cost: its run, its bundle and its pretraining."""
    runs = [c.d_f_tokens] + [tokens for _, tokens in c.bundle]
    return sum(compute_flops(c.n_params, t, c.epochs) for t in runs) + compute_flops(c.n_params, c.pretrain_tokens)


def _same(a: float, b: float) -> bool:
    return bool(np.isclose(a, b, rtol=1e-6))


@dataclass
class _Design:
    """The runs behind a law (scratch columns, fine-tune points) and the noise the version read off them."""

    s_n: np.ndarray
    s_d: np.ndarray
    s_log_l: np.ndarray
    f_n: np.ndarray
    f_d: np.ndarray
    f_log_l: np.ndarray
    sigma: tuple[float, int, float, int]
    """sigma_s, dof_s, sigma_f, dof_f."""
    extra: list[tuple[str, float, float]] = field(default_factory=list)
    """Runs added by the what-if: (role, N, tokens)."""


def _design(law: TransferLaw) -> _Design:
    s = law.scratch
    pts = list(law.points)
    checks = law.checks or {}
    used = sum(p.used for p in pts)
    # The version reads its scratch noise off the scratch residuals (global form: n - parameters) and floors the
    # fine-tune noise at the pooled scale; the degrees of freedom only set the Student-t widening.
    dof_s = max(int(s.log_n.size) - (5 if s.method == "irreducible" else 4), 1)
    sigma_s = float(checks.get("scratch_noise") or 0.0)
    sigma_f = float(checks.get("finetune_noise") or sigma_s)
    return _Design(s_n=np.exp(s.log_n), s_d=np.exp(s.log_d), s_log_l=np.array(s.log_l, dtype=float),
                   f_n=np.array([p.n for p in pts], dtype=float), f_d=np.array([p.d_f for p in pts], dtype=float),
                   f_log_l=np.log([p.loss for p in pts]) if pts else np.empty(0),
                   sigma=(sigma_s, dof_s, sigma_f, max(used - 3, 0) + dof_s))


def _scratch_for(law: TransferLaw, n: np.ndarray, d: np.ndarray, log_l: np.ndarray) -> ScratchModel:
    levels, group = group_by_n(n)
    curves = [monotone_curve(np.log(d[group == g]), log_l[group == g]) for g in range(levels.size)]
    s = law.scratch
    return ScratchModel(levels=levels, curves=curves, kaplan=s.kaplan, method=s.method, log_n=np.log(n),
                        log_d=np.log(d), log_l=log_l, irreducible=s.irreducible)


def _scratch_loss(scratch: ScratchModel, n: float, d: float) -> float:
    """Predicted ln loss of a scratch run: the scratch model; past an interpolated curve's end, its last slope
    (or the Kaplan form where the curve has one node or N has none)."""
    value = float(scratch.log_loss(np.array([n]), np.array([np.log(d)]))[0])
    if np.isfinite(value):
        return value
    i = scratch.curve_index(n)
    if i >= 0 and scratch.curves[i][0].size >= 2:
        ld, ll = scratch.curves[i]
        end = -1 if np.log(d) > ld[-1] else 0
        j = -2 if end == -1 else 1
        slope = min((ll[end] - ll[j]) / (ld[end] - ld[j]), 0.0)
        return float(ll[end] + slope * (np.log(d) - ld[end]))
    law = scratch.kaplan_law()
    return float(law.log_loss(np.array([n]), np.array([d]))[0]) if law is not None else float("nan")


@dataclass(frozen=True)
class _Sim:
    half_a: float
    half_b: float
    share: float
    """Share of draws that identify the law."""
    used: int
    """Usable fine-tune points."""
    warnings: int
    """Fit warnings a pin target cares about: 3 points only, two sizes only, per N a low-data cutoff unchecked."""


def _warnings(grown: ScratchModel, u_n: np.ndarray) -> int:
    if u_n.size == 0:
        return 3
    sizes = np.unique(np.round(np.log(u_n), 9)).size
    unchecked = np.unique(u_n[_cutoff_unmeasured(grown, u_n)]).size
    return int(u_n.size <= MIN_POINTS) + int(sizes <= 2) + unchecked


def _simulate(law: TransferLaw, design: _Design, draws: int, seed: int, width: int = 0) -> _Sim:
    """The version's parametric bootstrap on ``design`` (plus its extra runs): alpha and beta 95% half-widths,
    the share of draws that identify the law, the number of usable fine-tune points and the warnings left.

    ``width``: fine-tune columns of noise to draw (the usable points, then copies of the first that weigh nothing),
    so that designs compared with each other draw the same noise for the same points: a draws x m matrix of
    normals read row by row gives every point new numbers when m grows by one."""
    theta = np.array([np.log(law.k), law.alpha, law.beta])
    s_n, s_d, s_log_l = design.s_n, design.s_d, design.s_log_l
    grown = _scratch_for(law, s_n, s_d, s_log_l)
    # The fitter keeps the first of repeated scratch points (same N and D), so a scratch repeat adds nothing.
    new_s: list[tuple[float, float]] = []
    for role, n, d in design.extra:
        seen = [*zip(s_n, s_d, strict=True), *new_s]
        if role == ROLE_SCRATCH and not any(_same(n, a) and _same(d, b) for a, b in seen):
            new_s.append((n, d))
    if new_s:
        # Where the law's scratch model (with the runs before it) puts each new scratch run.
        losses = []
        for n, d in new_s:
            losses.append(_scratch_loss(grown, n, d))
            s_n, s_d, s_log_l = np.r_[s_n, n], np.r_[s_d, d], np.r_[s_log_l, losses[-1]]
            grown = _scratch_for(law, s_n, s_d, s_log_l)
    f_n, f_d, f_log_l = design.f_n, design.f_d, design.f_log_l
    new_f = [(n, d) for role, n, d in design.extra if role == ROLE_FINETUNE]
    if new_f:
        n_new, d_new = np.array([n for n, _ in new_f]), np.array([d for _, d in new_f])
        d_t = law.k * d_new**law.alpha * n_new**law.beta
        f_n, f_d = np.r_[f_n, n_new], np.r_[f_d, d_new]
        f_log_l = np.r_[f_log_l, [_scratch_loss(grown, n, d) for n, d in zip(n_new, d_new + d_t, strict=True)]]
    ok = np.isfinite(f_log_l)
    log_d_e = np.full(f_n.shape, np.nan)
    log_d_e[ok] = grown.log_d_e(f_n[ok], f_log_l[ok])
    reasons = _classify(grown, f_n, np.log(f_d), log_d_e, law.settings.get("low_data_fraction", 0.1))
    used = np.array([r == "" for r in reasons], dtype=bool) & ok
    u_n, u_log_d_f = f_n[used], np.log(f_d[used])
    warn = _warnings(grown, u_n)
    if used.sum() < MIN_POINTS or np.linalg.matrix_rank(law_design(u_log_d_f, np.log(u_n))) < 3:
        return _Sim(float("inf"), float("inf"), 0.0, int(used.sum()), warn)
    x = law_design(u_log_d_f, np.log(u_n))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        fitted = grown.log_loss(u_n, np.logaddexp(u_log_d_f, x @ theta))
    fitted = np.where(np.isfinite(fitted), fitted, f_log_l[used])
    pad = max(width - u_n.size, 0)
    u_n, u_log_d_f, fitted = (np.r_[v, np.full(pad, v[0])] for v in (u_n, u_log_d_f, fitted))
    weights = np.r_[np.ones(u_n.size - pad), np.zeros(pad)]
    sigma_s, dof_s, sigma_f, dof_f = design.sigma
    dof_s += len(new_s)
    dof_f += len(new_f) + len(new_s)
    rng = np.random.default_rng(seed)
    sampler = log_d_e_sampler(rng, draws, grown.form(), (grown.group, grown.log_n, grown.log_d, grown.log_l),
                              (sigma_s, dof_s), np.log(u_n), match_n(grown.levels, u_n), fitted, (sigma_f, dof_f))
    raw, _ = law_draws_in_blocks(sampler, np.tile(weights, (draws, 1)), u_log_d_f, np.log(u_n),
                                 max(grown.log_n.size, u_n.size))
    good = np.isfinite(raw).all(axis=1)
    if good.sum() < 10:
        return _Sim(float("inf"), float("inf"), float(good.mean()), int(used.sum()), warn)
    half = (np.percentile(raw[good, 1:], 97.5, axis=0) - np.percentile(raw[good, 1:], 2.5, axis=0)) / 2
    return _Sim(float(half[0]), float(half[1]), float(good.mean()), int(used.sum()), warn)


def _width(design: _Design, candidates: Sequence[Candidate]) -> int:
    """The most fine-tune points any candidate's design can use: every one measured or added, plus its own runs."""
    return design.f_n.size + len(design.extra) + max((1 + len(c.bundle) for c in candidates), default=0)


def _version_halfwidths(law: TransferLaw) -> tuple[float, float]:
    out = []
    for name in ("alpha", "beta"):
        low, high = law.intervals.get(name, (np.nan, np.nan))
        width = (high - low) / 2
        out.append(float(width) if np.isfinite(width) else float("inf"))
    return out[0], out[1]


def _ratio(version: float, simulated: float) -> float:
    """The factor that maps simulated half-widths onto the version's own (1 where either is not finite)."""
    return version / simulated if np.isfinite(version) and np.isfinite(simulated) and simulated > 0 else 1.0


def _with_runs(design: _Design, c: Candidate) -> _Design:
    runs = [(c.role, c.n_params, c.d_f_tokens)] + [(role, c.n_params, t) for role, t in c.bundle]
    return replace(design, extra=design.extra + runs)


def _kind(design: _Design, c: Candidate) -> str:
    if c.pretrain_tokens > 0:
        return "new size"
    if c.role == ROLE_SCRATCH:
        measured = any(_same(n, c.n_params) and _same(d, c.d_f_tokens) for n, d in zip(design.s_n, design.s_d,
                                                                                          strict=True))
        return "scratch repeat" if measured else "scratch"
    measured = any(_same(n, c.n_params) and _same(d, c.d_f_tokens) for n, d in zip(design.f_n, design.f_d,
                                                                                      strict=True))
    measured |= any(r == ROLE_FINETUNE and _same(n, c.n_params) and _same(d, c.d_f_tokens)
                    for r, n, d in design.extra)
    return "repeat" if measured else "fine-tune"


def _check(candidates: Sequence[Candidate], alpha_weight: float, beta_weight: float) -> None:
    if alpha_weight < 0 or beta_weight < 0 or alpha_weight + beta_weight == 0:
        raise ValueError("alpha_weight and beta_weight must be >= 0 and not both 0")
    for c in candidates:
        if c.role not in (ROLE_FINETUNE, ROLE_SCRATCH):
            raise ValueError(f"candidate role must be {ROLE_FINETUNE!r} or {ROLE_SCRATCH!r}, not {c.role!r}")
        if not (c.n_params > 0 and c.d_f_tokens > 0 and c.epochs > 0 and c.pretrain_tokens >= 0):
            raise ValueError(f"candidate {c} needs positive N, D_F and epochs")


def _scale(law: TransferLaw, design: _Design, draws: int, seed: int, width: int) -> tuple[float, float]:
    """Factors mapping simulated half-widths onto the version's own, read once on the runs the version used."""
    ver_a, ver_b = _version_halfwidths(law)
    now = _simulate(law, design, draws, seed, width)
    return _ratio(ver_a, now.half_a), _ratio(ver_b, now.half_b)


def _rank(law: TransferLaw, design: _Design, candidates: Sequence[Candidate], scale: tuple[float, float], *,
          alpha_weight: float, beta_weight: float, per_compute: bool, draws: int, seed: int,
          wall: WallTime, target: Target | None = None, min_shrink: float = 0.0
          ) -> tuple[list[Advice], tuple[float, float, float]]:
    width = _width(design, candidates)
    now = _simulate(law, design, draws, seed, width)
    scale_a, scale_b = scale
    base = (now.half_a * scale_a, now.half_b * scale_b, now.share)
    advice = []
    for c in candidates:
        after = _simulate(law, _with_runs(design, c), draws, seed, width)
        after_a, after_b = after.half_a * scale_a, after.half_b * scale_b
        floors = (0.0, 0.0) if target is None else (
            target.alpha_halfwidth, BETA_MARGIN * abs(law.beta) if target.beta_excludes_0 else np.inf)
        # Relative reduction of each half-width; with a target, only the part above what the target asks for.
        gain = [w * (1 - max(a, f) / max(b, f)) for w, a, b, f in
                ((alpha_weight, after_a, base[0], floors[0]), (beta_weight, after_b, base[1], floors[1]))
                if np.isfinite(b) and b > 0 and np.isfinite(a) and np.isfinite(max(b, f))]
        # A warning removed (a third size, a curve that now flattens) counts like halving an interval.
        shrink = (sum(gain) / (alpha_weight + beta_weight) + (after.share - now.share)
                  + WARNING_VALUE * (now.warnings - after.warnings))
        shrink = float(shrink) if shrink >= max(min_shrink, 0.0) and shrink > 0 else 0.0
        flops = candidate_flops(c)
        note = ""
        if after.used <= now.used and c.role == ROLE_FINETUNE:
            note = ("its D_E cannot be computed yet (no scratch curve reaches its loss at this N): "
                    "train scratch runs there first")
        elif after.used <= now.used and shrink == 0:
            note = "makes no excluded fine-tune point usable and does not tighten the intervals"
        advice.append(Advice(candidate=c, flops=flops, alpha_halfwidth=after_a, beta_halfwidth=after_b,
                             shrink=shrink, score=shrink / (flops / 1e15), new_points=max(after.used - now.used, 0),
                             identified=after.share, kind=_kind(design, c),
                             seconds=wall.seconds(flops, candidate_runs(c)), note=note, warnings=after.warnings))
    key = (lambda a: a.score) if per_compute else (lambda a: a.shrink)
    return sorted(advice, key=key, reverse=True), base


def rank_next_runs(law: TransferLaw, candidates: Sequence[Candidate], *, alpha_weight: float = 1.0,
                   beta_weight: float = 1.0, per_compute: bool = True, draws: int = DRAWS, seed: int = 0,
                   wall: WallTime = WallTime(), min_shrink: float = 0.0) -> list[Advice]:
    """Rank candidate runs by how much each shrinks alpha's and beta's 95% intervals per unit of compute.

    ``law`` is a fitted ``TransferLaw``. Returns one ``Advice`` per candidate, best first (by ``score``, or by
    ``shrink`` when ``per_compute`` is False). A run that adds nothing predicts the version's own half-widths; a
    shrink below ``min_shrink`` counts as none.
    """
    _check(candidates, alpha_weight, beta_weight)
    design = _design(law)
    scale = _scale(law, design, draws, seed, _width(design, candidates))
    ranked, _ = _rank(law, design, candidates, scale, alpha_weight=alpha_weight,
                      beta_weight=beta_weight, per_compute=per_compute, draws=draws, seed=seed,
                      wall=wall, min_shrink=min_shrink)
    return ranked


def meets(alpha_half: float, beta: float, beta_half: float, identified: float, target: Target,
          warnings: int = 0) -> bool:
    """Whether predicted (or fitted) intervals meet the target (and no fit warning is left)."""
    beta_ok = not target.beta_excludes_0 or abs(beta) > beta_half
    return alpha_half <= target.alpha_halfwidth and beta_ok and identified >= IDENTIFIED and warnings == 0


def plan_to_target(law: TransferLaw, candidates: Sequence[Candidate], target: Target, *, max_steps: int = 30,
                   draws: int = DRAWS, seed: int = 0, wall: WallTime = WallTime()) -> Plan:
    """Greedy plan: take the best-ranked candidate, add it to the design at its predicted loss, re-rank, until the
    predicted intervals meet ``target`` (or ``max_steps``, or no candidate helps). Candidates may repeat (a
    repeat with a new seed); a new size is taken at most once."""
    _check(candidates, 1.0, 1.0)
    design = _design(law)
    steps: list[Advice] = []
    pool = list(candidates)
    half_a, half_b = _version_halfwidths(law)
    share = float(np.isfinite(law.draws["alpha"]).mean()) if law.draws["alpha"].size else 1.0
    scale = _scale(law, design, draws, seed, _width(design, pool))
    warn = len(law.warnings)
    while not meets(half_a, law.beta, half_b, share, target, warn) and len(steps) < max_steps and pool:
        ranked, _ = _rank(law, design, pool, scale, alpha_weight=1.0, beta_weight=1.0, per_compute=True,
                          draws=draws, seed=seed, wall=wall, target=target, min_shrink=MIN_SHRINK)
        best = ranked[0]
        if best.shrink <= 0:
            break
        steps.append(best)
        design = _with_runs(design, best.candidate)
        if best.candidate.pretrain_tokens > 0:
            pool = [c for c in pool if c is not best.candidate]
            # Its checkpoint now exists: later runs at this N are ordinary fine-tunes and scratch runs.
            pool += [replace(best.candidate, pretrain_tokens=0.0, bundle=())]
        half_a, half_b, share, warn = best.alpha_halfwidth, best.beta_halfwidth, best.identified, best.warnings
    reached = meets(half_a, law.beta, half_b, share, target, warn)
    return Plan(steps=steps, reached=reached, flops=sum(s.flops for s in steps),
                seconds=sum(s.seconds for s in steps), alpha_halfwidth=half_a,
                beta_interval=(law.beta - half_b, law.beta + half_b))


def alpha_halfwidth(law: TransferLaw) -> float:
    """Half-width of alpha's bootstrap 95% interval (``law.intervals["alpha"]``), inf when unknown."""
    return _version_halfwidths(law)[0]


def scratch_model_disputed(law: TransferLaw) -> bool:
    """Whether the fit warns that a competing scratch model (nearly as good in cross-validation) puts alpha or beta
    outside their intervals: a new scratch point is then the run that helps."""
    bootstrap = int(law.settings.get("bootstrap", 0))
    return bool(_model_choice_warnings(law.checks.get("candidates", []), law.intervals, bootstrap))
