"""Next-run advice on small synthetic laws: its predicted intervals come from the version's own bootstrap model, so
it agrees with a brute-force refit, a run that adds nothing predicts "now", a repeat is not ranked above a new
cell that buys more per FLOP, pretraining is paid for, and the plan reaches its target."""

from __future__ import annotations

import itertools
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from _fit_synth import TEXT_TO_PYTHON, kaplan_loss, synthetic_runs

from transfer_laws.registry.fit import RunResult, fit_transfer_law
from transfer_laws.registry.fit.advice import (
    MIN_SHRINK,
    Candidate,
    Plan,
    Target,
    candidate_flops,
    compute_flops,
    plan_to_target,
    rank_next_runs,
)
from transfer_laws.registry.next_runs import format_plan

K, ALPHA, BETA = TEXT_TO_PYTHON
NS = (1e6, 1e7)
SCRATCH_D = tuple(np.geomspace(1e6, 1e11, 9))


def _runs(d_f: tuple[float, ...] = (1e4, 3e4), noise: float = 0.01) -> list[RunResult]:
    return synthetic_runs(TEXT_TO_PYTHON, loss_noise=noise, n_grid=NS, scratch_d=SCRATCH_D, d_f=d_f, seed=1)


@pytest.fixture(scope="module")
def law():  # a TransferLaw: 2 sizes x 2 D_F, Kaplan scratch form, 1% loss noise
    return fit_transfer_law(_runs(), d_e_method="kaplan", bootstrap=400)


def _true_loss(c: Candidate) -> float:
    d = c.d_f_tokens if c.role == "scratch" else c.d_f_tokens + K * c.d_f_tokens**ALPHA * c.n_params**BETA
    return float(kaplan_loss(c.n_params, d))


def _brute_force_alpha_halfwidth(c: Candidate) -> float:
    """Train the run (its true loss) and refit with the full bootstrap: alpha's half-width after it."""
    refit = fit_transfer_law(_runs() + [RunResult("new", c.role, c.n_params, c.d_f_tokens, _true_loss(c))],
                             d_e_method="kaplan", bootstrap=400)
    low, high = refit.intervals["alpha"]
    return (high - low) / 2


def test_advice_prefers_the_run_a_brute_force_bootstrap_says_shrinks_alpha_most(law) -> None:
    candidates = [Candidate(1e6, 1e4, label="repeat"), Candidate(1e6, 1e5, label="3x D_F"),
                  Candidate(1e7, 3e5, label="10x D_F"), Candidate(1e6, 1e12, role="scratch", label="scratch")]
    ranked = rank_next_runs(law, candidates, alpha_weight=1.0, beta_weight=0.0, per_compute=False)
    brute = {c.label: _brute_force_alpha_halfwidth(c) for c in candidates}
    assert ranked[0].candidate.label == min(brute, key=brute.__getitem__) == "10x D_F"
    for advice in ranked:  # the predicted half-widths are the refit's, to bootstrap noise
        assert advice.alpha_halfwidth == pytest.approx(brute[advice.candidate.label], rel=0.2)
    order = [a.candidate.label for a in ranked]
    assert order.index("3x D_F") < order.index("repeat")


def test_a_run_that_adds_nothing_predicts_the_version_interval(law) -> None:
    # A scratch repeat is dropped by the fitter (it keeps the first point at that N and D).
    repeat = Candidate(float(np.exp(law.scratch.log_n[0])), float(np.exp(law.scratch.log_d[0])), role="scratch")
    (advice,) = rank_next_runs(law, [repeat])
    low, high = law.intervals["alpha"]
    assert advice.alpha_halfwidth == pytest.approx((high - low) / 2, rel=1e-9)
    assert advice.shrink == 0 and advice.kind == "scratch repeat" and advice.note


def test_the_prediction_hardly_depends_on_the_advice_s_own_random_numbers(law) -> None:
    # Designs one run apart are simulated on common random numbers (the noise scales' chi-square draws have streams
    # of their own, the fine-tune noise a fixed width), so 100 draws are enough to compare them. Drawn afresh per
    # design, the predicted half-width of the same run moved by 37% to 66% of the interval between advice seeds, and
    # in the pin loop every candidate could look like it widened alpha.
    candidates = [Candidate(n, d) for n in NS for d in (1e4, 3e4, 1e5)]
    low, high = law.intervals["alpha"]
    predicted: dict[Candidate, list[float]] = {c: [] for c in candidates}
    for seed in range(6):
        for advice in rank_next_runs(law, candidates, draws=100, seed=seed):
            predicted[advice.candidate].append(advice.alpha_halfwidth / ((high - low) / 2))
    spreads = [max(v) - min(v) for v in predicted.values()]
    assert max(spreads) < 0.3 and float(np.mean(spreads)) < 0.2


def test_a_shrink_within_the_simulation_s_noise_counts_as_none() -> None:
    # Among ten fine-tunes one more repeat narrows the intervals by about a percent, within the simulation's own
    # noise; ranked per FLOP such repeats won one after another in the pin loop (130 of them on one synthetic truth).
    many = fit_transfer_law(_runs(d_f=(1e4, 3e4, 1e5, 3e5, 1e6)), d_e_method="kaplan", bootstrap=400)
    repeats = [Candidate(n, d) for n in NS for d in (1e4, 3e4, 1e5)]
    raw = rank_next_runs(many, repeats, draws=100)
    floored = rank_next_runs(many, repeats, draws=100, min_shrink=MIN_SHRINK)
    assert any(0 < a.shrink < MIN_SHRINK for a in raw)
    assert all(a.shrink == 0 or a.shrink >= MIN_SHRINK for a in floored)
    small = {a.candidate for a in raw if a.shrink < MIN_SHRINK}
    assert all(a.shrink == 0 for a in floored if a.candidate in small)


def test_a_repeat_is_not_ranked_above_a_new_cell_that_buys_more_per_flop(law) -> None:
    repeat = Candidate(1e6, 3e4, label="repeat")
    new = Candidate(1e6, 1e5, label="new")
    far = Candidate(1e7, 1e6, label="far")
    ranked = rank_next_runs(law, [repeat, new, far])
    kinds = {a.candidate.label: a.kind for a in ranked}
    assert kinds == {"repeat": "repeat", "new": "fine-tune", "far": "fine-tune"}
    by = {a.candidate.label: a for a in ranked}
    assert by["new"].shrink > by["repeat"].shrink
    # Ranked by shrink per FLOP: every candidate above the repeat buys more per FLOP, and a new cell that shrinks
    # more for at most the repeat's compute is always above it.
    order = [a.candidate.label for a in ranked]
    for a in ranked[:order.index("repeat")]:
        assert a.score >= by["repeat"].score
    same_cost = Candidate(1e6, 3e4, label="repeat-again")
    cheaper_new = Candidate(1e6, 2.9e4, label="new-cheaper")
    pair = rank_next_runs(law, [same_cost, cheaper_new])
    if pair[1].candidate.label == "repeat-again":
        assert pair[0].shrink >= pair[1].shrink
    else:
        assert pair[0].shrink > pair[1].shrink  # the repeat is first only because it shrinks more


def test_pretraining_and_bundled_runs_are_paid_for(law) -> None:
    bundle = (("scratch", 1e9), ("finetune", 3e4))
    new_size = Candidate(3e7, 1e4, epochs=2.0, label="new", pretrain_tokens=6e8, bundle=bundle)
    expected = (compute_flops(3e7, 1e4, 2.0) + compute_flops(3e7, 1e9, 2.0) + compute_flops(3e7, 3e4, 2.0)
                + compute_flops(3e7, 6e8))
    assert candidate_flops(new_size) == pytest.approx(expected)
    (advice,) = rank_next_runs(law, [new_size])
    assert advice.flops == pytest.approx(expected) and advice.kind == "new size"
    free = rank_next_runs(law, [Candidate(3e7, 1e4, epochs=2.0, label="free", bundle=bundle)])[0]
    assert free.shrink == pytest.approx(advice.shrink)  # same runs, same help...
    assert free.score > advice.score  # ...but the pretraining makes it dearer


def test_a_scratch_run_that_reaches_stranded_finetunes_is_worth_their_points() -> None:
    runs = _runs(d_f=(1e4, 3e4, 1e5, 1e6))
    # The interpolated curve at N = 1e7 stops below D = 1e8: fine-tunes whose D_E lies beyond are excluded.
    cut = [r for r in runs if r.role != "scratch" or r.n_params < 1e7 or r.d_f_tokens <= 1e8]
    law = fit_transfer_law(cut, d_e_method="interpolate", bootstrap=200)
    stranded = [p for p in law.points if not p.used and "below" in p.reason]
    assert stranded, "the setup needs fine-tunes beyond the curves"
    n = stranded[0].n
    extend = Candidate(n, 1e10, role="scratch", label="extend")
    inside = Candidate(n, 3e6, role="scratch", label="inside")
    by = {a.candidate.label: a for a in rank_next_runs(law, [extend, inside], draws=200)}
    assert by["extend"].new_points >= 1 and by["extend"].shrink > by["inside"].shrink
    assert by["inside"].new_points == 0


def test_the_plan_reaches_its_target_and_totals_its_compute(law) -> None:
    candidates = [Candidate(n, d, epochs=3.0) for n, d in itertools.product(NS, (1e4, 3e4, 1e5, 3e5, 1e6))]
    plan = plan_to_target(law, candidates, Target(alpha_halfwidth=0.08, beta_excludes_0=True), draws=200)
    # Only two sizes: the warning stays, so the target cannot be met without a third size, and the plan says so.
    assert not plan.reached and plan.steps
    assert plan.flops == pytest.approx(sum(s.flops for s in plan.steps))
    assert plan.alpha_halfwidth <= 0.08
    third = [*candidates, Candidate(1e8, 1e4, epochs=3.0, pretrain_tokens=2e9, label="new",
                                    bundle=(("finetune", 1e5), ("scratch", 1e12)))]
    plan = plan_to_target(law, third, Target(alpha_halfwidth=0.08), draws=200)
    assert plan.reached and any(s.kind == "new size" for s in plan.steps)


@pytest.mark.parametrize(
    "bad", [Candidate(0, 1e5), Candidate(1e6, 1e5, role="pretrain"), Candidate(1e6, 1e5, epochs=0)]
)
def test_bad_candidates_are_refused(law, bad: Candidate) -> None:
    with pytest.raises(ValueError, match="candidate"):
        rank_next_runs(law, [bad])


def test_adaptive_loop_fits_the_real_law_and_never_repeats_a_cell() -> None:
    from transfer_laws.registry.fit import FitError, RunResult, fit_transfer_law
    from transfer_laws.registry.next_runs import adaptive_order, format_advice

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


def test_law_candidates_cover_every_kind_of_run_and_never_go_below_the_smallest_budget(law) -> None:
    from dataclasses import replace

    from transfer_laws.registry.next_runs import MIN_TOKENS, law_candidates

    candidates = law_candidates(law)
    kinds = {(c.role, c.pretrain_tokens > 0) for c in candidates}
    assert kinds == {("finetune", False), ("scratch", False), ("finetune", True)}
    assert all(c.d_f_tokens >= MIN_TOKENS for c in candidates) and all(c.command for c in candidates)
    tiny = replace(law, points=[replace(p, d_f=300.0) for p in law.points])
    assert min(c.d_f_tokens for c in law_candidates(tiny) if c.role == "finetune") >= MIN_TOKENS


def test_a_size_read_back_from_the_scratch_logs_is_not_a_second_size(law) -> None:
    # exp(log N) of the scratch model comes back as 12767.999...; the fine-tunes say 12768: one size, one row each.
    from dataclasses import replace

    import numpy as np

    from transfer_laws.registry.next_runs import law_candidates

    noisy = replace(law, scratch=replace(law.scratch, log_n=np.log(np.exp(law.scratch.log_n) * (1 - 1e-12))))
    candidates = law_candidates(noisy)
    keys = [(c.role, round(c.n_params), round(c.d_f_tokens), c.pretrain_tokens) for c in candidates]
    assert len(keys) == len(set(keys))
    assert {c.n_params for c in candidates if c.role == "scratch"} >= {float(round(p.n)) for p in law.points}


def test_wall_time_is_a_fixed_cost_per_run_plus_a_rate(sqlite_uri: str) -> None:
    # Runs that take 20 s plus 1 s per 1e9 FLOP: the model reads both back from their MLflow durations, so a tiny
    # run is not predicted to take no time, and a candidate's bundle pays the fixed cost once per run.
    from types import SimpleNamespace

    from mlflow import MlflowClient

    from transfer_laws.registry.fit.advice import WallTime, candidate_runs
    from transfer_laws.registry.next_runs import EPOCHS, wall_time

    client = MlflowClient(sqlite_uri, sqlite_uri)
    exp = client.create_experiment("timed")
    points = []
    for n, d_f in [(1e4, 1e3), (1e4, 8e3), (1e5, 2e3), (1e5, 1e4)]:
        seconds = 20.0 + 6 * n * d_f * EPOCHS / 1e9
        run = client.create_run(exp, start_time=1_000_000)
        client.set_terminated(run.info.run_id, end_time=1_000_000 + int(seconds * 1000))
        points.append(SimpleNamespace(run_id=run.info.run_id, n=n, d_f=d_f))
    wall = wall_time(client, SimpleNamespace(points=points))
    assert wall.per_run_s == pytest.approx(20.0, rel=1e-3) and wall.per_flop_s == pytest.approx(1e-9, rel=1e-3)
    bundle = Candidate(1e6, 1e3, "finetune", EPOCHS, "new", pretrain_tokens=2e7, bundle=(("scratch", 1e4),))
    assert candidate_runs(bundle) == 3
    assert wall.seconds(0.0, candidate_runs(bundle)) == pytest.approx(60.0, rel=1e-3)
    assert np.isnan(wall_time(client, SimpleNamespace(points=[])).per_run_s)
    assert np.isnan(WallTime().seconds(1e9))


def test_a_plan_of_no_runs_reads_as_no_candidate_not_as_zero_runs() -> None:
    empty = Plan(steps=[], reached=False, flops=0.0, seconds=0.0, alpha_halfwidth=0.257, beta_interval=(0.26, 1.07))
    text = format_plan(empty, Target(alpha_halfwidth=0.1))
    assert "no candidate run" in text and "0 run(s)" not in text and "0.257" in text
    assert "already met" in format_plan(replace(empty, reached=True), Target(alpha_halfwidth=0.1))


def test_a_cell_with_max_seeds_is_no_longer_a_candidate(law) -> None:
    # demo --full's mix loop trained one cheap fine-tune cell 29 times: each repeat looked cheapest per FLOP.
    from dataclasses import replace

    from transfer_laws.registry.next_runs import MAX_SEEDS_PER_CELL, law_candidates

    cell = (law.points[0].n, law.points[0].d_f)
    repeats = [replace(law.points[0], run_id=f"repeat-{i}") for i in range(MAX_SEEDS_PER_CELL - 1)]

    def cells(of) -> set[tuple[str, float, float]]:
        return {(c.role, c.n_params, c.d_f_tokens) for c in law_candidates(of) if not c.pretrain_tokens}

    assert ("finetune", *cell) in cells(replace(law, points=[*law.points, *repeats[:-1]]))  # one seed short
    [again] = [c for c in law_candidates(replace(law, points=[*law.points, *repeats[:1]]))
               if (c.role, c.n_params, c.d_f_tokens) == ("finetune", *cell) and not c.pretrain_tokens]
    assert again.command.endswith("--seed 2 --train.seed 2")  # two runs there: the repeat is the third seed
    full = cells(replace(law, points=[*law.points, *repeats]))
    assert ("finetune", *cell) not in full and len(full) == len(cells(law)) - 1  # that cell only
