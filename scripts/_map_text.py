"""The transfer map as text: the sources of a target side by side, their crossing points, the "which checkpoint?"
ranking, and the paper's comparison of two sources (``print_source_comparison``, which the demo calls)."""

from __future__ import annotations

import math

from transfer_laws.registry.tracking import client_for, use_tracking_uri
from transfer_laws.registry.transfer_map import MapDoc, read_target, source_contrast


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def _est(e: MapDoc | None, digits: int = 3) -> str:
    """``value [low, high]`` (the bounds left out where the draws give none)."""
    if not e:
        return "n/a"
    text = _num(e.get("value"), digits)
    low, high = e.get("low"), e.get("high")
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        text += f" [{_num(low, digits)}, {_num(high, digits)}]"
    return text


def format_map(doc: MapDoc) -> list[str]:
    """One line per source (k per token and per character, alpha, beta, runs, verdict), then each crossing."""
    lines = [f"transfer map of target {doc['target']}: D_T = k * D_F^alpha * N^beta  ({doc['convention']})"]
    for law in doc["laws"]:
        head = f"  {law['source']:>8} -> {doc['target']}  v{law['version'] or '-'}"
        if "alpha" not in law:
            lines.append(f"{head}: no fit ({law.get('error') or 'none'})")
            continue
        lines.append(f"{head}: k = {_est(law['k_tokens'])} per token, {_est(law['k_chars'])} per character; "
                     f"alpha = {_est(law['alpha'])}; beta = {_est(law['beta'])}")
        cpt = law["chars_per_token"]
        lines.append(f"{'':12}runs: {law['finetunes_used']} of {law['finetunes_screened']} fine-tunes used, "
                     f"{law['scratch_runs']} scratch runs; {_num(cpt)} characters/token; "
                     f"{'determined' if law['determined'] else 'UNDETERMINED: ' + law['why']}")
        if law["verdict"]:
            lines.append(f"{'':12}verdict: {law['verdict'][0]}")
    for c in doc.get("crossings", []):
        pair = " and ".join(c["sources"])
        if c["d_f"] is None:
            lines.append(f"  {pair}: {c['note']}")
            continue
        lines.append(f"  {pair}: D_T lines cross at D_F = {_est(c['d_f'])} {doc['unit']} (N = {c['n']:.3g}), "
                     f"{c['note']}; below it {c['below']} transfers more, above it {c['above']} "
                     f"(same order in {_num(100 * (c['share_same_order'] or math.nan), 3)}% of draws)")
    return lines


def format_ranking(doc: MapDoc) -> list[str]:
    """"Which checkpoint?": the ranking at (N, D_F) with intervals, the URI to use and every caveat."""
    unit, loss_unit = doc["unit"], "nats/char" if doc["unit"] == "chars" else "nats/token"
    lines = [f"which checkpoint at N = {doc['n']:.3g}, D_F = {doc['d_f']:.3g} {unit} (95% intervals; "
             f"{doc.get('ranked_by', 'ranked')}):"]
    for i, r in enumerate(doc.get("ranking", []), 1):
        flag = "" if r["determined"] else f"  [UNDETERMINED: {r['why']}]"
        lines.append(f"  {i}. {r['source']:>8}: loss {_est(r['loss'], 4)} {loss_unit}; multiplier "
                     f"{_est(r['multiplier'])}x; D_T {_est(r['d_t'])}{flag}")
        lines.append(f"{'':7}use {r['checkpoint']}" if r["checkpoint"] else f"{'':7}{r['checkpoint_note']}")
        vs = r.get("vs_next")
        if vs:
            verdict = {"indistinguishable": "indistinguishable from", "ahead": "ahead of",
                       "above undetermined": "ranked above the undetermined"}[vs["relation"]]
            lines.append(f"{'':7}{verdict} {vs['than']}: effective data ratio {_est(vs['d_e_ratio'])}, ahead in "
                         f"{_num(100 * vs['share_ahead'], 3)}% of draws")
        lines += [f"{'':7}EXTRAPOLATION: {e}: a prediction, not a measurement" for e in r["extrapolation"]]
    lines += [f"  note: {n}" for n in doc.get("notes", [])]
    ranking = doc.get("ranking", [])
    if ranking:
        top = ranking[0]
        tie = top.get("vs_next") and top["vs_next"]["indistinguishable"]
        pick = top["checkpoint"] or f"a {top['source']} checkpoint of this size (none registered)"
        other = (ranking[1]["checkpoint"] or ranking[1]["source"]) if tie else ""
        lines.append(f"=> fine-tune from {pick}" + (f" (or {other}: the two are indistinguishable here)" * bool(tie)))
    return lines


def format_contrast(c: MapDoc) -> list[str]:
    """The paper's three questions about two sources, each answered with its interval, whatever it shows."""
    base, other = c["base"], c["other"]
    more, lower, same = c["transfers_more"], c["alpha_lower"], c["beta_same"]
    return [
        f"{other} against {base} at N = {c['n']:.3g} (95% intervals over both laws' draws):",
        f"  does {other} transfer more at small D_F (D_F = {c['d_f']:.3g} {c['unit']})? {more['answer']}: "
        f"D_T({other}) / D_T({base}) = {_est(more['d_t_ratio'])} (paper: yes)",
        f"  is {other}'s alpha lower? {lower['answer']}: alpha({other}) - alpha({base}) = "
        f"{_est(lower['difference'])} (paper: 0.096 - 0.18 = -0.084)",
        f"  is beta the same? {same['answer']}: beta({other}) - beta({base}) = {_est(same['difference'])} "
        "(paper: 0.38 for both)",
    ]


def print_source_comparison(target: str = "python", base: str = "text", other: str = "mix",
                            tracking_uri: str | None = None, n: float | None = None) -> MapDoc:
    """Print whether ``other`` -> target transfers more than ``base`` -> target at small D_F, whether its alpha is
    lower and whether beta is the same, each with its interval, from the two laws' ``@latest`` versions; returns
    the numbers. Raises ``LookupError`` when either law has no fit yet."""


    uri = use_tracking_uri(tracking_uri)
    result = source_contrast(read_target(client_for(uri), target), base, other, n=n)
    for line in format_contrast(result):
        print(line)
    return result
