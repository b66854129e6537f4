"""The law's stand-alone HTML report: what the law says in words, its numbers and checks, the plots, the runs.

One file (the SVG charts inlined, no external request), so it can be mailed or published as is.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

from transfer_laws.registry.paper import TEXT_TO_PYTHON

from ._model import TransferLaw
from ._plots import unit_of

PAPER = TEXT_TO_PYTHON
"""Hernandez et al. 2021, Table 1, text -> python (D_F in characters)."""
_STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #11171c;
       max-width: 60rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #d1d9e1; padding: 0.25rem 0.7rem; text-align: left; }
th { background: #f6f7f9; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.left-out td { color: #5f7281; }
figure { margin: 1.5rem 0; } figure svg { max-width: 100%; height: auto; border: 1px solid #d1d9e1; }
figcaption { font-size: 0.9rem; color: #5f7281; }
.warning { background: #fff7e6; border-left: 4px solid #e69f00; padding: 0.3rem 0.8rem; margin: 0.3rem 0; }
.verdict { background: #eef5fb; border-left: 4px solid #0072b2; padding: 0.3rem 0.8rem; }
code { background: #f6f7f9; padding: 0 0.2rem; }
"""


def _num(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}g}" if math.isfinite(value) else "\u2014"


def _interval(law: TransferLaw, name: str) -> str:
    low, high = law.intervals.get(name, (float("nan"), float("nan")))
    return f"[{_num(low)}, {_num(high)}]" if math.isfinite(low) and math.isfinite(high) else "\u2014"


def explanation(law: TransferLaw, unit: str) -> str:
    """A few sentences, with this fit's numbers, saying what the law means."""
    used = sum(p.used for p in law.points)
    ns = sorted({p.n for p in law.points if p.used})
    text = (f"Fine-tuning a pretrained model of N non-embedding parameters on D<sub>F</sub> {unit} of the target "
            f"reaches the loss that a model of the same size trained from scratch reaches only with "
            f"D<sub>E</sub> = D<sub>F</sub> + D<sub>T</sub> {unit}. The extra D<sub>T</sub>, the <em>effective data "
            f"transferred</em>, follows D<sub>T</sub> = k &middot; D<sub>F</sub><sup>&alpha;</sup> &middot; "
            f"N<sup>&beta;</sup>. Fitted here from {used} fine-tunes at {len(ns)} model size"
            f"{'s' if len(ns) != 1 else ''}: k = {_num(law.k)}, &alpha; = {_num(law.alpha, 3)}, "
            f"&beta; = {_num(law.beta, 3)}.")
    if math.isfinite(law.alpha) and law.alpha != 0:
        text += (f" Doubling the fine-tuning data multiplies D<sub>T</sub> by 2<sup>&alpha;</sup> = "
                 f"{2 ** law.alpha:.3g}; {_exchange_html(law)}")
    text += (f" The paper found &alpha; = {PAPER['alpha']} and &beta; = {PAPER['beta']} for text &rarr; python "
             "(D<sub>F</sub> in characters): &beta; &gt; 0 means larger models gain more from pretraining.")
    return f"<p>{text}</p>"


def _exchange_html(law: TransferLaw) -> str:
    interval = law.exchange_interval()
    if interval is None:
        return ("how much a 10&times; larger model is worth in fine-tuning data is undetermined (&alpha;'s 95% "
                "interval includes 0).")
    return (f"a 10&times; larger model is worth {_num(law.exchange_rate(), 3)}&times; more fine-tuning data "
            f"(10<sup>&beta;/&alpha;</sup>; 95% interval {_num(interval[0], 3)}&times; to "
            f"{_num(interval[1], 3)}&times;, from the bootstrap draws).")


def _params_table(law: TransferLaw) -> str:
    """k, alpha, beta with intervals beside the paper's; k per character (the paper's unit) is the row the paper's k
    sits beside, k in the law's own unit has none."""
    unit = unit_of(law)
    per_char = law.k_per_char()
    rows = [("k" if unit == "characters" else f"k (D<sub>F</sub> in {unit})", _num(law.k), _interval(law, "k"),
             _num(float(PAPER["k"]), 3) if unit == "characters" else "")]
    if unit != "characters":
        value = "n/a" if per_char.value is None else _num(per_char.value)
        low, high = per_char.low, per_char.high
        bounds = (f"[{_num(low)}, {_num(high)}]" if low is not None and high is not None and math.isfinite(low)
                  and math.isfinite(high) else "\u2014")
        rows.append(("k (D<sub>F</sub> in characters)", value, bounds, _num(float(PAPER["k"]), 3)))
    rows += [(name, _num(getattr(law, name)), _interval(law, name), _num(float(PAPER[name]), 3))
             for name in ("alpha", "beta")]
    body = "".join(f"<tr><td>{name}</td><td class='num'>{value}</td><td class='num'>{bounds}</td>"
                   f"<td class='num'>{paper}</td></tr>" for name, value, bounds, paper in rows)
    note = f"<p class='unit-note'>k per character: {escape(per_char.basis())}.</p>" if unit != "characters" else ""
    return ("<table class='params'><tr><th>parameter</th><th>fitted</th><th>95% interval</th>"
            f"<th>paper (text&rarr;python, D<sub>F</sub> in characters)</th></tr>{body}</table>{note}")


def _checks(law: TransferLaw) -> str:
    checks = law.checks
    parts = [f"<p class='verdict'>{escape(str(line))}</p>" for line in checks.get("verdict") or []]
    parts += [f"<p class='warning'>Warning: {escape(str(w))}</p>" for w in law.warnings]
    needs = checks.get("needs") or []
    if needs:
        parts.append("<p>Runs that would firm it up:</p><ul>" + "".join(f"<li>{escape(str(n))}</li>" for n in needs)
                     + "</ul>")
    method = checks.get("estimator") or law.settings.get("d_e_method", "")
    parts.append(f"<p>D<sub>E</sub> estimated by <code>{escape(str(method))}</code> from "
                 f"{law.scratch.log_d.size} scratch runs; {len(law.excluded)} runs left out (reasons below).</p>")
    return "".join(parts)


def _holds(law: TransferLaw, unit: str) -> str:
    """Where the law holds: per N the D_F range fitted and where the fine-tunes bend (empty for older fits)."""
    rows = ((getattr(law, "checks", {}) or {}).get("regime") or {}).get("holds") or []
    if not rows:
        return ""
    body = "".join(f"<tr><td class='num'>{_num(r['n'], 3)}</td><td class='num'>{_num(r['d_f_low'], 3)} &ndash; "
                   f"{_num(r['d_f_high'], 3)}</td><td class='num'>"
                   f"{_num(r['bends_above'], 3) if r['bends_above'] is not None else 'not seen'}</td></tr>"
                   for r in rows)
    return (f"<p>Where the law holds: D<sub>F</sub> ({unit}) of the fine-tunes in the fit, per model size.</p>"
            f"<table class='holds'><tr><th>N</th><th>D<sub>F</sub> fitted</th><th>bends down above</th></tr>{body}"
            "</table>")


def _runs_table(law: TransferLaw, unit: str) -> str:
    head = (f"<tr><th>run</th><th>N</th><th>D<sub>F</sub> ({unit})</th><th>best loss (nats/token)</th>"
            f"<th>D<sub>E</sub> ({unit})</th><th>D<sub>T</sub> ({unit})</th><th>in the fit</th></tr>")
    rows = "".join(
        f"<tr class='{'used' if p.used else 'left-out'}'><td><code>{escape(p.run_id)}</code></td>"
        f"<td class='num'>{_num(p.n, 3)}</td><td class='num'>{_num(p.d_f, 4)}</td><td class='num'>{p.loss:.4f}</td>"
        f"<td class='num'>{_num(p.d_e, 4)}</td><td class='num'>{_num(p.d_t, 4)}</td>"
        f"<td>{'yes' if p.used else escape(p.reason)}</td></tr>"
        for p in sorted(law.points, key=lambda p: (p.n, p.d_f)))
    return f"<table class='runs'>{head}{rows}</table>"


def _excluded(law: TransferLaw) -> str:
    fine_tunes = {p.run_id for p in law.points}
    others = [(rid, why) for rid, why in law.excluded if rid not in fine_tunes]
    if not others:
        return ""
    items = "".join(f"<li><code>{escape(rid)}</code>: {escape(why)}</li>" for rid, why in others)
    return f"<h2>Other runs left out</h2><ul class='excluded'>{items}</ul>"


def write_report(law: TransferLaw, figures: list[tuple[str, str]], path: Path, title: str) -> Path:
    """Write the report to ``path``; ``figures`` are (inline ``<svg>``, what to look at in it)."""
    unit = unit_of(law)
    body = "".join(f"<figure>{fig}<figcaption>{escape(caption)}</figcaption></figure>" for fig, caption in figures)
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{explanation(law, unit)}"
            f"<h2>Parameters</h2>{_params_table(law)}<h2>How far to trust it</h2>{_checks(law)}{_holds(law, unit)}"
            f"<h2>Plots</h2>{body}<h2>Fine-tune runs ({len(law.points)})</h2>{_runs_table(law, unit)}"
            f"{_excluded(law)}</body></html>")
    path.write_text(page)
    return path
