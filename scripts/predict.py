"""``transfer-laws predict``: what a law says about a model size and a fine-tuning budget, with intervals.

``--n 1e8 --d-f 1e6``: effective data transferred D_T, effective data D_E, the multiplier (D_F + D_T) / D_F, the
fraction of effective data from transfer and the predicted best loss. ``--target-loss L`` with ``--n``: the D_F needed
to reach L at that N; with ``--d-f``: the N needed at that D_F. ``--next``: which runs to do next.
D_F is in the law's unit (tokens of the law's tokenizer unless the law was fitted in characters).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from transfer_laws.registry.schema import LAW_ALIAS


@dataclass(kw_only=True)
class Args:
    """Arguments of ``transfer-laws predict``."""

    law: str = "text-to-python"
    """The law, <source>-to-<target>."""
    n: float | None = None
    """Non-embedding parameters N of the model asked about."""
    d_f: float | None = None
    """Fine-tuning data D_F, in the law's unit."""
    target_loss: float | None = None
    """A target best loss (nats/token): with --n, the D_F needed; with --d-f, the N needed."""
    next_runs: bool = field(default=False, metadata={"flag": "next"})
    """Rank candidate runs by how much each would tighten alpha and beta per unit of compute."""
    version: str = LAW_ALIAS
    """Law version: an alias (latest) or a version number."""
    json: bool = False
    """Print JSON instead of a table."""
    tracking_uri: str | None = None
    """MLflow tracking URI; default: MLFLOW_TRACKING_URI, else the embedded SQLite store under TRANSFER_LAWS_HOME."""


def _fmt(value: float, interval: tuple[float, float] | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{value:.4g}"
    if interval is not None and all(map(math.isfinite, interval)):
        text += f"  [{interval[0]:.4g}, {interval[1]:.4g}]"
    return text


def run(args: Args) -> int:
    from transfer_laws.registry.tracking import use_tracking_uri
    from transfer_laws.scripts._law import load_law_version

    use_tracking_uri(args.tracking_uri)
    law, mv, _ = load_law_version(args.law, args.version)
    answer: dict[str, Any] = {"law": args.law, "version": str(mv.version), "k": law.k, "alpha": law.alpha,
                              "beta": law.beta}
    if args.next_runs:
        answer["next"] = _next_runs(law)
    if args.target_loss is not None:
        if args.n is not None:
            answer["d_f_for_target_loss"] = float(law.d_f_for_target_loss(args.n, args.target_loss))
        elif args.d_f is not None:
            answer["n_for_target_loss"] = float(law.n_for_target_loss(args.d_f, args.target_loss))
        else:
            raise ValueError("--target-loss needs --n (to get the D_F needed) or --d-f (to get the N needed)")
    elif args.n is not None and args.d_f is not None:
        answer["prediction"] = _as_plain(law.predict(args.n, args.d_f))
    elif not args.next_runs:
        raise ValueError("give --n and --d-f, or --target-loss with one of them, or --next")
    if args.json:
        print(json.dumps(answer, indent=2, default=float))
        return 0
    print(f"law {args.law} v{mv.version}: D_T = {law.k:.4g} * D_F^{law.alpha:.3f} * N^{law.beta:.3f}")
    if "prediction" in answer:
        print(f"at N={args.n:.3g}, D_F={args.d_f:.3g} (95% intervals):")
        for key, value in answer["prediction"].items():
            if isinstance(value, dict):
                print(f"  {key:>16}: {_fmt(value['value'], (value['low'], value['high']))}")
    for key in ("d_f_for_target_loss", "n_for_target_loss"):
        if key in answer:
            print(f"  {key}: {_fmt(answer[key])}")
    for advice in answer.get("next", []):
        print("  next: " + ", ".join(f"{k}={v}" for k, v in advice.items()))
    return 0


def _as_plain(prediction: Any) -> dict[str, Any]:
    """A prediction (dataclass or mapping) as {quantity: {value, low, high}}."""
    import dataclasses

    raw = dataclasses.asdict(prediction) if dataclasses.is_dataclass(prediction) else dict(prediction)
    plain: dict[str, Any] = {}
    for key, value in raw.items():
        if key.endswith(("_low", "_high")):
            continue
        low, high = raw.get(f"{key}_low"), raw.get(f"{key}_high")
        if isinstance(value, (int, float)) or hasattr(value, "item"):
            plain[key] = {"value": float(value), "low": float(low) if low is not None else float("nan"),
                          "high": float(high) if high is not None else float("nan")}
    return plain


def _next_runs(law: Any) -> list[dict[str, Any]]:
    """Candidates around the law's own grid: each measured N and one size up, each measured D_F and 3x beyond."""
    from transfer_laws.registry.advice import Candidate, rank_next_runs
    from transfer_laws.scripts.advise import advice_rows

    ns = sorted({float(p.n) for p in law.points})
    d_fs = sorted({float(p.d_f) for p in law.points})
    if not ns or not d_fs:
        return []
    ns.append(ns[-1] * 2)
    d_fs.append(d_fs[-1] * 3)
    candidates = [Candidate(n_params=n, d_f_tokens=d, role=role, epochs=3.0, label=f"N={n:.3g}")
                  for n in ns for d in d_fs for role in ("finetune", "scratch")]
    return advice_rows(rank_next_runs(law, candidates)[:8])
