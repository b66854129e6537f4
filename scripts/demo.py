"""``transfer-laws demo``: from nothing to a fitted transfer law on the embedded store, on a CPU.

The runs are ``plugin.sweeps.demo``'s (corpora, tokenizer, pretraining, fine-tunes, scratch curves, refits, and with
--full the pin loops); this prints their progress lines as they come, then what they show: the paper's findings on
our runs, the law with its intervals, and how to browse and ask it.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from transfer_laws.plugin.sweeps import DemoArgs as Args
from transfer_laws.plugin.sweeps import pin_laws, train_seed_runs
from transfer_laws.plugin.sweeps.demo import SOURCE_WORDS, SizeRuns
from transfer_laws.registry.forecast import load_version_fit
from transfer_laws.registry.refit import RefitResult
from transfer_laws.registry.schema import LAW_ALIAS, law_model_name, law_page_url
from transfer_laws.registry.tracking import client_for
from transfer_laws.scripts._map_text import print_source_comparison

if TYPE_CHECKING:
    from transfer_laws.registry.fit import TransferLaw

__all__ = ["Args", "run"]


def run(args: Args) -> int:
    say = partial(print, flush=True)  # the engine's progress lines, each as it happens
    seeds = train_seed_runs(args, say=say)  # applies --quick / --full to args
    for source in seeds.sources:
        if len(seeds.sources) > 1:
            print(f"\n== {source} -> python ==")
        _print_findings(seeds.by_source[source], SOURCE_WORDS.get(source, source))
    last_refit = pin_laws(args, seeds, say=say) if args.full else seeds.last_refit
    _print_law(seeds.laws, seeds.uri, last_refit)
    if args.full:
        _print_source_comparison(seeds.uri)
    return 0


def _print_source_comparison(uri: str) -> None:
    """The paper's Table-1 comparison on the two laws --full pinned: does the mix transfer more at small D_F, is its
    alpha lower, is beta the same (each with its interval)."""
    print("\n== mix -> python against text -> python (Hernandez et al. 2021, Table 1) ==")
    try:
        print_source_comparison("python", base="text", other="mix", tracking_uri=uri)
    except LookupError as exc:  # a law without a fit yet
        print(f"no comparison yet: {exc}")

def _print_findings(results: dict[str, SizeRuns], source: str = "English") -> None:
    """The paper's qualitative findings, checked on our own runs and said plainly either way.

    A fine-tune at D_F is compared with the scratch run of the same size trained on the smallest D >= D_F: beating
    a model that saw at least as much Python is what "pretraining helps at small D_F" means.
    """
    print("\nWhat the runs show (best held-out Python loss, nats/token):")
    print(f"{'size':>6} {'N':>10} {'D_F':>9} {'fine-tuned':>11} {'scratch D':>10} {'scratch':>9} {'gain':>7}")
    wins, comparisons = 0, 0
    gains_by_n: dict[int, list[tuple[int, float]]] = {}
    for size, per in results.items():
        for d_f, ft in per["finetune"].items():
            larger = sorted(d for d in per["scratch"] if d >= d_f)
            if not larger:
                continue
            sc = per["scratch"][larger[0]]
            gain = sc.best_test_loss - ft.best_test_loss
            comparisons += 1
            wins += gain > 0
            gains_by_n.setdefault(d_f, []).append((per["n_params"], gain))
            print(f"{size:>6} {per['n_params']:>10,} {d_f:>9,} {ft.best_test_loss:>11.3f} {larger[0]:>10,} "
                  f"{sc.best_test_loss:>9.3f} {gain:>+7.3f}")
    if comparisons:
        verdict = "does" if wins == comparisons else ("mostly does" if wins > comparisons / 2 else "does NOT")
        print(f"- Pretraining on {source} {verdict} beat training from scratch on at least as much Python: "
              f"{wins} of {comparisons} comparisons.")
    smallest = min(gains_by_n) if gains_by_n else None
    if smallest is not None and len(gains_by_n[smallest]) > 1:
        ordered = sorted(gains_by_n[smallest])
        grows = all(b[1] >= a[1] for a, b in zip(ordered, ordered[1:], strict=False))
        print(f"- At D_F={smallest:,}, the gain from pretraining {'grows' if grows else 'does NOT grow'} with N: "
              + ", ".join(f"N={n:,}: {g:+.3f}" for n, g in ordered))


def _latest_fit(uri: str, law: str, results: list[RefitResult]) -> list[TransferLaw]:
    """The fit of the version a refit found already covering the runs (status ``unchanged``), if any."""
    versions = [r.version for r in results if r.status == "unchanged" and r.version]
    if not versions:
        return []
    client = client_for(uri)
    return [load_version_fit(client, uri, client.get_model_version(law_model_name(law), versions[-1]))]


def _print_law(laws: str | list[str], uri: str, last_refit: RefitResult | list[RefitResult] | None) -> None:
    laws = [laws] if isinstance(laws, str) else laws
    results = last_refit if isinstance(last_refit, list) else [last_refit] if last_refit else []
    for law in laws:
        print()
        mine = [r for r in results if r.law == law]
        fitted = [r.fit for r in mine if r.fit is not None] or _latest_fit(uri, law, mine)
        if fitted:
            fit = fitted[-1]
            if len(laws) > 1:
                print(f"{law}:")
            print(fit.summary())
            for name, value, meaning in (("beta", fit.beta, "D_T grows with N"), ("alpha", fit.alpha,
                                                                                   "D_T grows with D_F")):
                low, high = fit.intervals.get(name, (float("nan"), float("nan")))
                said = f"{name} = {value:.3f} [{low:.3g}, {high:.3g}]"
                if low > 0:
                    print(f"- {meaning} on these runs ({said}, 95% interval above 0), as in the paper.")
                elif value > 0:
                    print(f"- These runs suggest that {meaning} ({said}) but do not determine it: the interval "
                          "includes 0. More runs narrow it: `transfer-laws pin` trains the advised ones.")
                else:
                    print(f"- These runs do NOT show that {meaning} ({said}): too few or too small runs (a CPU "
                          "demo's N spans a few x; benchmarks/gpu_sweep.sh trains larger models on a GPU).")
            print(f"\nRegistered as models:/{law_model_name(law)}@{LAW_ALIAS}")
        else:
            reasons = "; ".join(r.reason or r.status for r in mine) or "no refit ran"
            print(f"The law {law} could not be fitted from these runs: {reasons}")
    if uri.startswith("sqlite:"):
        print(f"\nBrowse it:  transfer-laws serve --backend-store-uri {uri}\n  then open "
              "http://127.0.0.1:5000/#/experiments?workflowType=machine_learning (MLflow's runs and models) and "
              f"http://127.0.0.1:5000{law_page_url(laws[0])} (the law page)")
    for law in laws:
        print(f"Ask it:     transfer-laws predict --law {law} --n 1e6 --d-f 1e4   (--target-loss, --next: see --help)")
        print(f"Plots:      transfer-laws report --law {law}")
