"""``transfer-laws predict``: what a law says about a model size and a fine-tuning budget, with intervals.

``--n 1e8 --d-f 1e6``: effective data transferred D_T, effective data D_E, the multiplier (D_F + D_T) / D_F, the
fraction of effective data from transfer and the predicted best loss. ``--target-loss L`` with ``--n``: the D_F needed
to reach L at that N; with ``--d-f``: the N needed at that D_F. ``--next``: which runs to do next.
D_F is in the law's unit (tokens of the law's tokenizer unless the law was fitted in characters).

Every answer repeats the fit's verdict and warnings and flags each query outside the N and D_F the law was fitted
on, by how many decades, and each D_F past where the law holds at that N (the low-data regime: the D_F range fitted
at the measured N nearest the query; a bend the fine-tunes showed is named).
Exit codes: 0 answered, 2 invalid arguments (nothing was looked up), 3 the law cannot
reach the target loss.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from transfer_laws.lightning_modules.config import PRESETS, positive
from transfer_laws.registry.reader import read_law_inputs
from transfer_laws.registry.records import MAX_D, MAX_N
from transfer_laws.registry.schema import LAW_ALIAS, PARAM_VOCAB, demo_checkpoint_template, parse_law
from transfer_laws.registry.tracking import active_client, use_tracking_uri
from transfer_laws.scripts._errors import BadInput, UserError
from transfer_laws.scripts._jsonout import JsonDict, json_document
from transfer_laws.scripts._law import load_law_version

if TYPE_CHECKING:
    from transfer_laws.registry.fit import Checks, Prediction, TransferLaw
    from transfer_laws.registry.fit.advice import Advice, Plan, Target

EXIT_UNREACHABLE = 3
"""The law cannot reach the target loss (at that N, or at any N for that D_F)."""
TARGET_DRAWS = 200
"""Bootstrap draws solved for a --target-loss interval (each is a root search)."""


@dataclass(kw_only=True)
class Args:
    """Arguments of ``transfer-laws predict``."""

    law: str = "text-to-python"
    """The law, <source>-to-<target>."""
    n: float | None = positive(None, maximum=MAX_N)
    """Non-embedding parameters N of the model asked about."""
    d_f: float | None = positive(None, maximum=MAX_D["chars"])
    """Fine-tuning data D_F, in the law's unit."""
    target_loss: float | None = positive(None)
    """A target best loss (nats/token): with --n, the D_F needed; with --d-f, the N needed."""
    next_runs: bool = field(default=False, metadata={"flag": "next"})
    """Rank candidate runs by how much each would tighten alpha and beta per unit of compute, with the plan (runs,
    commands, total compute) to reach --next-alpha-halfwidth."""
    next_alpha_halfwidth: float = positive(0.1)
    """--next plans until alpha's 95% half-width is at most this (and beta's interval excludes 0)."""
    version: str = LAW_ALIAS
    """Law version: an alias (latest) or a version number."""
    json: bool = False
    """Print JSON instead of a table."""
    tracking_uri: str | None = None
    """MLflow tracking URI; default: MLFLOW_TRACKING_URI, else the embedded SQLite store under TRANSFER_LAWS_HOME."""


def check_question(args: Args) -> None:
    """The arguments ask one answerable question (raised before the law is even looked up)."""
    if args.target_loss is not None:
        if (args.n is None) == (args.d_f is None):
            raise BadInput("--target-loss needs exactly one of --n (to get the D_F needed) or --d-f (to get the N "
                           "needed)")
    elif (args.n is None) != (args.d_f is None):
        given, missing = ("--n", "--d-f") if args.n is not None else ("--d-f", "--n")
        raise BadInput(f"{given} needs {missing} too (or --target-loss)")
    elif args.n is None and not args.next_runs:
        raise BadInput("give --n and --d-f, or --target-loss with one of them, or --next")
    if args.d_f is not None and args.d_f < 1:
        raise BadInput(f"--d-f {args.d_f:g} is under one token (or character): D_F counts whole tokens of data")


def check_target_loss(law: TransferLaw, loss: float, n: float | None, vocab_size: int | None) -> None:
    """Refuse a target loss no model can mean: at or above ln V (the loss of predicting every token uniformly, an
    untrained model; bad input), or at or below the floor the law's scratch model puts at that N (or at any N),
    which no amount of data reaches (exit 3)."""
    import numpy as np

    if vocab_size and loss >= math.log(vocab_size):
        raise BadInput(f"--target-loss {loss:g} is at or above ln V = ln {vocab_size:,} = {math.log(vocab_size):.3f} "
                       "nats/token, the loss of predicting every token uniformly (an untrained model): no data "
                       "is needed to be that bad")
    at = np.array([float(n) if n is not None else 1e16])
    with np.errstate(all="ignore"):
        floor = float(np.exp(law.scratch.log_loss(at, np.array([math.log(1e30)]))[0]))
    if math.isfinite(floor) and loss <= floor:
        where = f"at N={n:.3g}" if n is not None else "at any N up to 1e16"
        raise UserError(f"--target-loss {loss:g} is at or below the loss floor the law's scratch model puts {where} "
                        f"({floor:.3f} nats/token with unlimited data): no amount of data reaches it", EXIT_UNREACHABLE)


def law_vocab_size(law: TransferLaw) -> int | None:
    """V of the law's tokenizer, from a run the law was fitted on (its ``vocab_size`` param); None if unknown."""
    from mlflow.exceptions import MlflowException


    client = active_client()
    for point in law.points[:3]:
        try:
            value = client.get_run(point.run_id).data.params.get(PARAM_VOCAB)
        except MlflowException:
            continue
        if value and value.isdigit():
            return int(value)
    return None


def nearest_presets(n: float) -> list[tuple[str, int]]:
    """The preset shapes (``--preset``) just below and just above N, with their N."""
    # lazy: numpy (0.2 s), which predict --help needs not
    from transfer_laws.registry.next_runs import preset_n

    sizes = sorted((preset_n(name), name) for name in PRESETS)
    below = [(name, size) for size, name in sizes if size <= n][-1:]
    above = [(name, size) for size, name in sizes if size > n][:1]
    return below + above


def run(args: Args) -> int:
    # lazy: numpy (0.2 s), which predict --help needs not
    from transfer_laws.registry.next_runs import advice_rows, format_advice, format_plan

    check_question(args)
    use_tracking_uri(args.tracking_uri, read_only=True)
    law, mv, _ = load_law_version(args.law, args.version)
    answer: JsonDict = {"law": args.law, "version": str(mv.version), "k": law.k, "alpha": law.alpha,
                              "beta": law.beta, "intervals": {k: list(v) for k, v in law.intervals.items()},
                              "unit": law.settings.get("unit", "tokens"), "fitted_range": fitted_range(law)}
    checks = law.checks
    answer["verdict"] = list(checks.get("verdict", []))
    answer["warnings"] = list(law.warnings)
    answer["outside_fitted_range"] = outside_range(answer["fitted_range"], n=args.n, d_f=args.d_f)
    if args.next_runs:
        ranked, plan, target, split = _next_runs(law, args.law, args.next_alpha_halfwidth)
        answer["next"] = advice_rows(ranked)
        answer["train_split"] = {"tokens": split.tokens, "candidates_too_large": split.too_large}
        answer["plan"] = {"reached": plan.reached, "FLOP": plan.flops, "runs": advice_rows(plan.steps),
                          "alpha_halfwidth": plan.alpha_halfwidth, "beta_interval": list(plan.beta_interval)}
        next_table = format_advice(ranked, top=8) if ranked else ""
    regime = checks.get("regime")
    answer["law_holds"] = list(regime.get("holds") or []) if regime else []
    answer["past_low_data_regime"] = past_regime(checks, args.n, args.d_f)
    if args.target_loss is not None:
        check_target_loss(law, args.target_loss, args.n, law_vocab_size(law))
        solve: Callable[[float, float], float]
        if args.n is not None:
            quantity, solve, given = "d_f", law.d_f_for_target_loss, args.n
        elif args.d_f is not None:
            quantity, solve, given = "n", law.n_for_target_loss, args.d_f
        else:  # check_question refuses this before the law is read
            raise BadInput("--target-loss needs exactly one of --n or --d-f")
        value, low, high = _target_with_interval(law, solve, given, args.target_loss, quantity)
        if quantity == "d_f" and value < 1:
            raise UserError(f"the law puts a best loss of {args.target_loss:g} at D_F = {value:.2g} {answer['unit']} "
                            f"at N={args.n:.3g}, under one: a model that saw less than one token is the untrained "
                            "model, so the law says nothing there; ask for a lower loss", EXIT_UNREACHABLE)
        answer[f"{quantity}_for_target_loss"] = {"value": value, "low": low, "high": high}
        if quantity == "n":
            answer["nearest_presets"] = [{"preset": name, "N": size} for name, size in nearest_presets(value)]
        answer["outside_fitted_range"] += outside_range(answer["fitted_range"], **{quantity: value})
        if quantity == "d_f":
            answer["past_low_data_regime"] = past_regime(checks, args.n, value)
    elif args.n is not None and args.d_f is not None:
        answer["prediction"] = _as_plain(law.predict(args.n, args.d_f))
        answer["interval_kind"] = {"loss": "prediction", "other": "confidence"}
    if args.json:
        print(json_document(answer))
    else:
        print_answer(answer, args, law)
        if args.next_runs:
            print("next runs, best value for compute first (cost: 6 N tokens x 3 epochs, pretraining included; +-: "
                  "predicted 95% half-widths after the run, from the version's own bootstrap model):")
            print("  " + next_table.replace("\n", "\n  ") if next_table else "  (no candidates)")
            if split.too_large:
                print(f"  ({split.too_large} candidate run(s) would need more than the {split.tokens:,} tokens of the "
                      "target's train split, and are not offered)")
            print(format_plan(plan, target))
    return 0


def fitted_range(law: TransferLaw) -> dict[str, list[float]]:
    """The N and D_F spanned by the fine-tunes the law was fitted on (all screened ones if none was used)."""
    points = [p for p in law.points if p.used] or list(law.points)
    if not points:
        return {}
    ns, d_fs = [float(p.n) for p in points], [float(p.d_f) for p in points]
    return {"N": [min(ns), max(ns)], "D_F": [min(d_fs), max(d_fs)]}


def past_regime(checks: Checks, n: float | None, d_f: float | None) -> JsonDict | None:
    """Where ``d_f`` lies past the D_F range the law was fitted on at the measured N nearest ``n``: that N, the
    range's top and the smallest D_F whose fine-tune showed the law bending there (None: no bend seen). None when
    ``d_f`` is inside (2% beyond the last run is rounding) or the law has no such record."""
    # lazy: numpy and scipy (~1 s), not needed before this step
    from transfer_laws.registry.fit import holds_at

    if n is None or d_f is None or not math.isfinite(d_f):
        return None
    row = holds_at(checks, n)
    if row is None or d_f <= 1.02 * row["d_f_high"]:
        return None
    return {"d_f": d_f, "n_measured": row["n"], "d_f_high": row["d_f_high"], "bends_above": row["bends_above"]}


def outside_range(span: dict[str, list[float]], **query: float | None) -> list[JsonDict]:
    """One entry per queried quantity outside the fitted span: which, the value, the span and by how many decades."""
    flagged = []
    for name, value in query.items():
        key = {"n": "N", "d_f": "D_F"}[name]
        if value is None or key not in span or not math.isfinite(value) or value <= 0:
            continue
        low, high = span[key]
        decades = math.log10(low / value) if value < low else math.log10(value / high) if value > high else 0.0
        if decades > 0.01:  # 2% beyond the last run is rounding, not extrapolation
            flagged.append({"quantity": key, "value": value, "fitted": [low, high], "decades": decades,
                            "side": "below" if value < low else "above"})
    return flagged


def _target_with_interval(law: TransferLaw, solve: Callable[[float, float], float], given: float, loss: float,
                          quantity: str) -> tuple[float, float, float]:
    """The answer at the fitted law and its 95% interval over bootstrap draws of k, alpha and beta."""
    import numpy as np

    value = float(solve(given, loss))
    if not math.isfinite(value):
        if quantity == "d_f":
            why = (f"no D_F reaches a best loss of {loss:g} at N={given:.3g}: the law's scratch model at that N "
                   "does not go that low (or the target is above where fine-tuning starts)")
        else:
            why = (f"no N up to 1e16 reaches a best loss of {loss:g} with D_F={given:.3g}, or the law has no "
                   "global scratch model to answer with")
        raise UserError(why, EXIT_UNREACHABLE)
    draws = {name: np.asarray(law.draws.get(name, [])) for name in ("k", "alpha", "beta")}
    count = min(len(d) for d in draws.values())
    picks: np.ndarray | list[int] = (np.unique(np.linspace(0, count - 1, min(TARGET_DRAWS, count)).astype(int))
                                     if count else [])
    answers = []
    for i in picks:
        k, alpha, beta = (float(draws[name][i]) for name in ("k", "alpha", "beta"))
        if all(map(math.isfinite, (k, alpha, beta))):
            one = dataclasses.replace(law, k=k, alpha=alpha, beta=beta)
            answers.append(float((one.d_f_for_target_loss if quantity == "d_f" else one.n_for_target_loss)(
                given, loss)))
    finite = [a for a in answers if math.isfinite(a)]
    if len(finite) < max(2, len(answers) // 2):  # most draws cannot answer: no honest interval
        return value, math.nan, math.nan
    low, high = np.percentile(finite, [2.5, 97.5])
    return value, float(low), float(high)


def _fmt(value: float | None, interval: tuple[float, float] | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{value:.4g}"
    if interval is not None:
        text += (f"  [{interval[0]:.4g}, {interval[1]:.4g}]" if all(map(math.isfinite, interval))
                 else "  [interval n/a]")
    return text


def print_answer(answer: JsonDict, args: Args, law: TransferLaw) -> None:
    """The table a person reads: the law, the answer with intervals, then every caveat."""
    iv = answer["intervals"]
    print(f"law {args.law} v{answer['version']}: D_T = k * D_F^alpha * N^beta  (D_F in {answer['unit']})")
    print(f"  k = {_fmt(law.k, iv.get('k'))}   alpha = {_fmt(law.alpha, iv.get('alpha'))}   "
          f"beta = {_fmt(law.beta, iv.get('beta'))}")
    span = answer["fitted_range"]
    if span:
        print(f"  fitted on N {span['N'][0]:.3g}..{span['N'][1]:.3g}, D_F {span['D_F'][0]:.3g}..{span['D_F'][1]:.3g}")
    if answer.get("law_holds"):
        print("  holds at " + "; ".join(f"N={r['n']:.3g}: D_F {r['d_f_low']:.3g}..{r['d_f_high']:.3g}"
                                        + (f" (bends above {r['bends_above']:.3g})" if r["bends_above"] else "")
                                        for r in answer["law_holds"]))
    if "prediction" in answer:
        print(f"at N={args.n:.3g}, D_F={args.d_f:.3g} (95% intervals; the loss's is a prediction interval, where "
              "one run's best loss falls, the others are the law's confidence intervals):")
        for key, value in answer["prediction"].items():
            kind = "  (prediction interval)" if key == "loss" else ""
            print(f"  {key:>16}: {_fmt(value['value'], (value['low'], value['high']))}{kind}")
    for key, label in (("d_f_for_target_loss", f"D_F needed at N={args.n or 0:.3g}"),
                       ("n_for_target_loss", f"N needed at D_F={args.d_f or 0:.3g}")):
        if key in answer:
            a = answer[key]
            print(f"to reach best loss {args.target_loss:g} nats/token (95% interval):")
            text = _fmt(a["value"], (a["low"], a["high"]))
            if key == "d_f_for_target_loss" and a["low"] < 1:  # draws that need under one token: the law is mute there
                text = text.replace(f"[{a['low']:.4g},", "[< 1,")
            print(f"  {label}: {text}")
    if answer.get("nearest_presets"):
        print("  nearest preset shapes: " + ", ".join(f"--preset {p['preset']} (N={p['N']:,})"
                                                       for p in answer["nearest_presets"]))
    for flag in answer["outside_fitted_range"]:
        print(f"WARNING: {flag['quantity']}={flag['value']:.3g} is {flag['decades']:.1f} decades {flag['side']} the "
              f"fitted range {flag['fitted'][0]:.3g}..{flag['fitted'][1]:.3g}: an extrapolation, not a measurement")
    past = answer.get("past_low_data_regime")
    if past and past["bends_above"] is not None:
        print(f"WARNING: D_F={past['d_f']:.3g} is past the low-data regime at N={past['n_measured']:.3g}: the "
              f"fine-tunes there bend below the power law from D_F={past['bends_above']:.3g} (the law holds up to "
              f"{past['d_f_high']:.3g}), so this overstates D_T: the runs do not support it")
    elif past and not any(f["quantity"] == "D_F" for f in answer["outside_fitted_range"]):
        print(f"WARNING: D_F={past['d_f']:.3g} is beyond the D_F fitted at N={past['n_measured']:.3g} (up to "
              f"{past['d_f_high']:.3g}): whether the law still holds there is not measured")
    for line in answer["verdict"]:
        print(f"verdict: {line}")
    for warning in answer["warnings"]:
        print(f"fit warning: {warning}")


def _as_plain(prediction: Prediction) -> dict[str, dict[str, float]]:
    """A prediction as {quantity: {value, low, high}}."""
    raw = dataclasses.asdict(prediction)
    plain: dict[str, dict[str, float]] = {}
    for key, value in raw.items():
        if key.endswith(("_low", "_high")):
            continue
        low, high = raw.get(f"{key}_low"), raw.get(f"{key}_high")
        if isinstance(value, (int, float)) or hasattr(value, "item"):
            plain[key] = {"value": float(value), "low": float(low) if low is not None else float("nan"),
                          "high": float(high) if high is not None else float("nan")}
    return plain


@dataclass(frozen=True)
class TrainSplit:
    """The target's train split as the law's runs logged it, and how many candidate runs it could not supply."""

    tokens: int | None
    """Its tokens (None when no run of the law logged them)."""
    too_large: int
    """Candidates left out for needing more."""


def _next_runs(law: TransferLaw, law_name: str,
               alpha_halfwidth: float) -> tuple[list[Advice], Plan, Target, TrainSplit]:
    """Candidates around the law's own runs (``next_runs.law_candidates``, fine-tuning the demo's checkpoints of the
    law's source) that the target's train split can supply, ranked, and the greedy plan to the target; wall times
    at the rate the law's own runs took."""

    # lazy: numpy (0.2 s), which predict --help needs not
    from transfer_laws.registry.fit.advice import Target, plan_to_target, rank_next_runs
    from transfer_laws.registry.next_runs import law_candidates, split_limit, wall_time, within_corpus

    target = Target(alpha_halfwidth)
    pool = law_candidates(law, checkpoint_template=demo_checkpoint_template(parse_law(law_name)[0])) \
        if law.points and law.draws["alpha"].size else []
    tokens = read_law_inputs(law_name, active_client()).split_tokens if pool else None
    candidates = within_corpus(pool, split_limit(tokens))
    split = TrainSplit(tokens, len(pool) - len(candidates))
    if not candidates:
        return [], plan_to_target(law, [], target), target, split
    wall = wall_time(active_client(), law)
    return (rank_next_runs(law, candidates, wall=wall),
            plan_to_target(law, candidates, target, wall=wall), target, split)


