"""Next-run advice on synthetic laws: new N beats a duplicate, compute normalisation, scratch rescues."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from transfer_laws.registry.advice import Candidate, compute_flops, rank_next_runs

K, ALPHA, BETA = 1.9e4, 0.18, 0.38


def _point(n: float, d_f: float, used: bool = True, reason: str = "", noise: float = 0.0) -> SimpleNamespace:
    d_t = K * d_f**ALPHA * n**BETA * np.exp(noise)
    return SimpleNamespace(run_id=f"{n:g}-{d_f:g}", n=n, d_f=d_f, d_t=d_t, used=used, reason=reason)


def _law(ns: tuple[float, ...], dfs: tuple[float, ...], extra: list[SimpleNamespace] | None = None,
         scratch_d: tuple[float, ...] = (1e6, 1e7, 1e8)) -> SimpleNamespace:
    rng = np.random.default_rng(0)
    points = [_point(n, d, noise=rng.normal(0, 0.1)) for n, d in itertools.product(ns, dfs)] + (extra or [])
    runs = [SimpleNamespace(role="scratch", n_params=n, d_f_tokens=d) for n, d in itertools.product(ns, scratch_d)]
    return SimpleNamespace(points=points, runs=runs)


def test_new_n_ranks_above_a_duplicate_of_an_existing_point() -> None:
    law = _law((1e6, 3e6), (1e5, 1e6))
    law.runs.append(SimpleNamespace(role="scratch", n_params=1e5, d_f_tokens=1e7))
    dup = Candidate(1e6, 1e5, label="duplicate")
    new = Candidate(1e5, 1e5, label="new N")  # outside the N range and cheaper
    ranked = rank_next_runs(law, [dup, new])
    assert [a.candidate.label for a in ranked] == ["new N", "duplicate"]
    by_label = {a.candidate.label: a for a in ranked}
    assert by_label["new N"].beta_halfwidth < by_label["duplicate"].beta_halfwidth
    assert by_label["duplicate"].shrink > 0  # a duplicate still helps a little


def test_compute_normalisation_prefers_the_cheaper_of_equal_help() -> None:
    law = _law((1e5, 1e6), (1e5, 1e6))
    # Mirror rows around the design's centre help about equally; the one at smaller D_F costs 1000x less.
    cheap, dear = Candidate(1e6, 1e4, label="cheap"), Candidate(1e6, 1e7, label="dear")
    raw = {a.candidate.label: a for a in rank_next_runs(law, [cheap, dear], per_compute=False)}
    assert raw["cheap"].shrink == pytest.approx(raw["dear"].shrink, rel=0.05)
    assert raw["dear"].flops == compute_flops(1e6, 1e7) == 6e13
    ranked = rank_next_runs(law, [dear, cheap])
    assert ranked[0].candidate.label == "cheap"
    assert ranked[0].score == pytest.approx(1000 * ranked[1].score, rel=0.1)
    epochs = rank_next_runs(law, [Candidate(1e6, 1e4, epochs=4.0)])[0]
    assert epochs.flops == pytest.approx(4 * compute_flops(1e6, 1e4))


def test_scratch_candidates_valued_by_the_points_they_make_usable() -> None:
    below = "outside the scratch curve's range: loss below every scratch run at this N"
    stranded = [_point(1e7, d, used=False, reason=below) for d in (1e5, 1e6)]
    law = _law((1e5, 1e6), (1e5, 1e6), extra=stranded, scratch_d=(1e6, 1e7))
    law.runs += [SimpleNamespace(role="scratch", n_params=1e7, d_f_tokens=d) for d in (1e6, 1e7)]
    bigger = Candidate(1e7, 1e8, role="scratch", label="extends the curve")
    inside = Candidate(1e7, 3e6, role="scratch", label="inside the curve")
    ranked = {a.candidate.label: a for a in rank_next_runs(law, [bigger, inside])}
    assert ranked["extends the curve"].new_points == 2 and ranked["extends the curve"].shrink > 0.1
    assert ranked["inside the curve"].new_points == 0 and ranked["inside the curve"].shrink == 0
    assert "no excluded" in ranked["inside the curve"].note


def test_finetune_without_scratch_curve_is_worth_nothing_and_says_why() -> None:
    law = _law((1e5, 1e6), (1e5, 1e6))
    (advice,) = rank_next_runs(law, [Candidate(1e8, 1e5)])
    assert advice.shrink == 0 and advice.new_points == 0 and "scratch" in advice.note


@pytest.mark.parametrize(
    "bad", [Candidate(0, 1e5), Candidate(1e6, 1e5, role="pretrain"), Candidate(1e6, 1e5, epochs=0)]
)
def test_bad_candidates_are_refused(bad: Candidate) -> None:
    with pytest.raises(ValueError, match="candidate"):
        rank_next_runs(_law((1e5, 1e6), (1e5, 1e6)), [bad])


def test_adaptive_loop_fits_the_real_law_and_never_repeats_a_cell() -> None:
    from transfer_laws.registry.fit import FitError, RunResult, fit_transfer_law
    from transfer_laws.scripts.advise import adaptive_order, format_advice

    scratch_d = [10.0 ** (6 + 0.5 * i) for i in range(9)]
    ns, dfs = (1e5, 1e6, 1e7), (1e5, 3e5, 1e6, 3e6)

    def kaplan(n: float, d: float) -> float:
        return ((8.8e13 / n) ** (0.076 / 0.095) + 5.4e13 / d) ** 0.095

    scratch = [RunResult(f"s{n:g}-{d:g}", "scratch", n, d, kaplan(n, d)) for n in ns for d in scratch_d]
    cells = [SimpleNamespace(n=n, d_f=d) for n, d in itertools.product(ns, dfs)]
    candidates = [Candidate(c.n, c.d_f) for c in cells]
    trained: list[SimpleNamespace] = []

    def train(cell: SimpleNamespace) -> RunResult:
        trained.append(cell)
        return RunResult(f"f{cell.n:g}-{cell.d_f:g}", "finetune", cell.n, cell.d_f,
                         kaplan(cell.n, cell.d_f + K * cell.d_f**ALPHA * cell.n**BETA))

    def fit(results: list[RunResult]):  # a TransferLaw
        try:
            return fit_transfer_law(scratch + results, bootstrap=50)
        except FitError as exc:
            raise ValueError(str(exc)) from exc

    results = adaptive_order(fit, cells, candidates, train, start=2, tolerance=1.0, max_runs=8)
    assert 3 <= len(results) < 8  # stopped on the tolerance, after the law became fittable and trustworthy
    assert len({id(c) for c in trained}) == len(trained)
    law = fit(results)
    assert law.alpha == pytest.approx(ALPHA, abs=0.05)
    table = format_advice(rank_next_runs(law, [Candidate(1e6, 1e5, label="2x64")]))
    assert "2x64" in table.splitlines()[1]
