"""Next-run advice for the command line: candidates from a grid, the ranked table for ``predict --next``, and the
``sweep --adaptive`` loop (refit, ask the advice for the best remaining cell, train it, until alpha is pinned).

The numerics live in ``transfer_laws.registry.advice``; this module only turns grid cells into candidates (N from
the preset's non-embedding parameter count) and drives the loop.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

from transfer_laws.registry.advice import Advice, Candidate, alpha_halfwidth, rank_next_runs


def preset_n(size: str) -> int:
    """N (non-embedding parameters, the schema's convention) of a PRESETS shape; independent of the vocabulary."""
    from transfer_laws.lightning_modules.model import non_embedding_params, preset

    return int(non_embedding_params(preset(size, vocab_size=256)))


def candidates_for(cells: Sequence[Any], epochs: float = 3.0) -> list[Candidate]:
    """One Candidate per sweep cell (``size``, ``d_f_tokens``, ``role``), labelled with the preset."""
    return [Candidate(n_params=preset_n(c.size), d_f_tokens=c.d_f_tokens, role=c.role, epochs=epochs, label=c.size)
            for c in cells]


def advice_rows(ranked: Sequence[Advice]) -> list[dict[str, Any]]:
    """Plain rows for printing (``predict --next``): one dict per candidate, best first."""
    return [{"role": a.candidate.role, "label": a.candidate.label, "N": a.candidate.n_params,
             "D_F_tokens": a.candidate.d_f_tokens, "PFLOP": a.flops / 1e15, "alpha_halfwidth": a.alpha_halfwidth,
             "beta_halfwidth": a.beta_halfwidth, "shrink": a.shrink, "score": a.score, "note": a.note}
            for a in ranked]


def format_advice(ranked: Sequence[Advice], top: int = 10) -> str:
    """A fixed-width table of the best ``top`` candidates."""
    lines = [f"{'role':9} {'size':10} {'N':>9} {'D_F':>9} {'PFLOP':>9} {'±alpha':>7} {'±beta':>7} {'shrink':>7}  note"]
    for row in advice_rows(ranked[:top]):
        lines.append(f"{row['role']:9} {row['label']:10} {row['N']:9.3g} {row['D_F_tokens']:9.3g} "
                     f"{row['PFLOP']:9.3g} {row['alpha_halfwidth']:7.3f} {row['beta_halfwidth']:7.3f} "
                     f"{row['shrink']:7.1%}  {row['note']}")
    return "\n".join(lines)


def adaptive_order(fit: Callable[[list[Any]], Any], cells: list[Any], candidates: list[Candidate],
                   train: Callable[[Any], Any], *, start: int, tolerance: float, max_runs: int,
                   log: Callable[[str], None] = lambda _: None) -> list[Any]:
    """Train cells in advice order until alpha's 95% half-width <= ``tolerance`` (with no fit warning, e.g. too few
    points for a reliable bootstrap) or ``max_runs`` runs.

    ``fit(results)`` returns a law (or raises ValueError while too few points exist); ``train(cell)`` returns the
    run's result. The first ``start`` runs go to a space-filling seed (the corners of the grid) so that a law can be
    fitted at all; after that each run is the best-ranked remaining candidate. Returns the results in run order.
    """
    remaining = list(range(len(cells)))
    results: list[Any] = []
    for i in _seed_order(candidates)[:start]:
        results.append(train(cells[i]))
        remaining.remove(i)
    while remaining and len(results) < max_runs:
        try:
            law = fit(results)
        except ValueError as exc:  # too few usable points yet: take the next seed-ordered cell
            log(f"adaptive: no law yet ({exc}); taking the next cell")
            pick = _seed_order([candidates[i] for i in remaining])[0]
            chosen = remaining[pick]
        else:
            width = alpha_halfwidth(law)
            log(f"adaptive: {len(results)} runs, alpha = {law.alpha:.3f} ± {width:.3f}")
            if width <= tolerance and not getattr(law, "warnings", None):  # a warned interval is not trusted
                break
            ranked = rank_next_runs(law, [candidates[i] for i in remaining])
            best = ranked[0].candidate
            chosen = next(i for i in remaining if candidates[i] is best)
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
        return (0 if candidates[i].role == "scratch" else 1, dist, i)

    return sorted(range(len(candidates)), key=key)


def run_adaptive(args: Any, study: Any, cells: list[Any], train_cell: Callable[[Any, int], tuple[str, float]]) -> int:
    """``sweep --adaptive``: each chosen cell is enqueued and run as a trial of the study (one MLflow run)."""
    from transfer_laws.registry.fit import RunResult, fit_transfer_law
    from transfer_laws.scripts.sweep import enqueue_cells, run_worker

    sizes = {c.size: preset_n(c.size) for c in cells}

    def train(cell: Any) -> Any:
        enqueue_cells(study, [cell])
        outcome: dict[str, Any] = {}

        def record(c: Any, number: int) -> tuple[str, float]:
            outcome["run"] = train_cell(c, number)
            return outcome["run"]

        run_worker(study, record, max_trials=1, progress=True)
        run_id, loss = outcome.get("run", (f"failed-{cell}", float("nan")))
        return RunResult(run_id, cell.role, sizes[cell.size], cell.d_f_tokens, loss)

    def fit(results: list[Any]) -> Any:
        return fit_transfer_law(results, bootstrap=200)

    results = adaptive_order(fit, cells, candidates_for(cells, args.epochs), train,
                             start=sum(c.role == "scratch" for c in cells) + min(4, len(cells)),
                             tolerance=args.alpha_tolerance, max_runs=args.max_runs,
                             log=lambda m: sys.stderr.write(m + "\n"))
    print(f"sweep {args.study} --adaptive: {len(results)} runs")
    return 0
