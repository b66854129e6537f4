"""``transfer-laws demo``: from nothing to a fitted transfer law on the embedded store, on a CPU.

Builds the corpora and the tokenizer, pretrains GPTs of a few sizes on English text, registers each checkpoint,
fine-tunes each on Python at a grid of D_F budgets, trains the same sizes from scratch on a grid of D (the D_E
reference curves), lets every landing run refit the law ``text-to-python`` (a new registered version whenever the
eligible runs change), then prints the law with intervals, what the data shows, and how to browse it all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict

from transfer_laws.registry.records import MAX_D
from transfer_laws.registry.schema import DEFAULT_EXPERIMENT, ROLE_FINETUNE, ROLE_SCRATCH, checkpoint_model_name
from transfer_laws.scripts._args import at_least, positive


@dataclass(kw_only=True)
class Args:
    """Arguments of ``transfer-laws demo``."""

    quick: bool = False
    """The CI form (about 4 minutes on 2 cores): two tiny sizes, short pretraining, two D_F budgets."""
    sizes: list[str] = field(default_factory=lambda: ["1x32", "2x32", "2x64"])
    """Model shapes (names from lightning_modules.config.PRESETS) to pretrain, fine-tune and train from scratch
    (N = 1.3e4, 2.5e4, 1.0e5: 7.8x)."""
    pretrain_steps: list[int] = positive(default_factory=lambda: [250, 500, 1950])
    """Pretraining optimizer steps per size: about 20 English tokens per non-embedding parameter (a step is 8 x 128
    = 1,024 tokens), the compute-optimal ratio of Hoffmann et al. 2022, so every size is pretrained as far for its
    N. With fewer steps for the larger sizes (500/600/700 for 1x32/2x32/2x48, 500/700/900 for 1x32/2x48/2x64) the
    demo's runs gave beta < 0 (benchmarks/RESULTS.md, Demo)."""
    pretrain_seconds: list[float] = positive(default_factory=lambda: [30.0, 60.0, 200.0])
    """Wall-clock cap on each size's pretraining, so a slow machine still finishes (about twice the time the steps
    take on 2 idle cores: the steps are the plan; a cap that bites pretrains that size less)."""
    d_f_tokens: list[int] = positive(maximum=MAX_D["tokens"], default_factory=lambda: [1_000, 2_500, 6_000])
    """Fine-tuning budgets D_F in tokens (the law is fitted in the low-data regime: D_F at most ~10% of the data
    at which the scratch curve of that size flattens; here at most 10% of the largest scratch D)."""
    scratch_tokens: list[int] = positive(maximum=MAX_D["tokens"],
                                         default_factory=lambda: [2_000, 6_000, 20_000, 60_000])
    """From-scratch training-set sizes D in tokens (must reach past the fine-tunes' D_E)."""
    run_max_steps: int = positive(1000)
    """Cap on each fine-tune's and scratch run's optimizer steps (early stopping usually ends them sooner; on the
    largest D the cap keeps the demo near 7 minutes on 2 cores and can leave that run short of its best loss)."""
    corpus_max_mb: float = positive(4.0)
    """Cap on each built-in corpus (MB)."""
    vocab_size: int = positive(2048)
    """BPE vocabulary of the English tokenizer."""
    bootstrap: int = at_least(0, 1000)
    """Bootstrap draws of each refit."""
    tracking_uri: str | None = None
    """MLflow tracking URI; default: MLFLOW_TRACKING_URI, else the embedded SQLite store under TRANSFER_LAWS_HOME."""
    experiment: str = DEFAULT_EXPERIMENT
    """Experiment that holds the demo's runs."""
    checkpoint_name: str = checkpoint_model_name("text")
    """Registered model that holds the pretrained checkpoints (one version per size)."""
    progress_bar: bool = False
    """Show Lightning's per-run progress bar (the demo prints one line per run either way)."""
    full: bool = False
    """The pinned form (about 45 minutes on 2 idle cores): both sources, English text and the text+code mix,
    pretrained at the same sizes and fine-tuned at the same D_F, a wider D_F span and longer scratch curves, then
    ``transfer-laws pin`` on each law (text-to-python, mix-to-python) until alpha is within +-0.1 or the budget is
    spent."""
    full_minutes: float = positive(45.0)
    """--full: wall-clock budget of the whole demo; what the seed runs leave is split between the two pin loops."""
    alpha_halfwidth: float = positive(0.1)
    """--full: the pin loops' target half-width of alpha's 95% interval."""
    patience: int | None = positive(None)
    """Early-stopping patience of fine-tunes and scratch runs, in held-out evaluations (None: the recipes'; --full
    uses 8, so a run that sits on a plateau for a few evaluations is not ended there)."""


QUICK = {
    "sizes": ["2x32", "2x64"],
    "pretrain_steps": [500, 500],
    "pretrain_seconds": [45.0, 60.0],
    "d_f_tokens": [2_000, 5_000],
    "scratch_tokens": [3_000, 10_000, 30_000, 100_000],
    "bootstrap": 300,
    "corpus_max_mb": 3.0,
}


FULL = {
    # N span 1x32 .. 2x64 (7.8x) as the default demo, plus whatever new size the advice asks for; D_F span 16x
    # (the default's 6x left alpha undetermined); scratch curves to 200k tokens (they still fell at 60k).
    "d_f_tokens": [500, 1_500, 4_000, 8_000],
    "scratch_tokens": [2_000, 6_000, 20_000, 60_000, 200_000],
    "run_max_steps": 1500,
    "patience": 8,
}
SOURCES_FULL = ("text", "mix")
SOURCE_WORDS = {"text": "English", "mix": "the English + code mix"}
"""How the findings name each pretraining source."""
"""--full pretrains both sources at the same sizes (issue 26: two laws, text-to-python and mix-to-python)."""


def _apply_quick(args: Args) -> Args:
    if args.quick and args.full:
        from transfer_laws.scripts._errors import BadInput

        raise BadInput("--quick and --full are different demos: give one")
    preset = QUICK if args.quick else FULL if args.full else {}
    defaults = Args()
    for key, value in preset.items():
        if getattr(args, key) == getattr(defaults, key):  # explicit flags win over the preset
            setattr(args, key, value)
    return args


class _Progress:
    """One line per finished run: done / total and an ETA weighted by compute (N x tokens) of the runs left."""

    def __init__(self, compute: list[float]) -> None:
        from transfer_laws.scripts._eta import ComputeEta

        self.eta = ComputeEta(compute)

    def line(self, text: str) -> None:
        self.eta.finish_one()
        left = self.eta.remaining_s()
        eta = "   -" if left != left else f"{left:4.0f}"  # NaN before any run finished
        print(f"[{self.eta.done}/{len(self.eta.compute)} | {self.eta.elapsed():5.0f}s | ETA {eta}s] {text}",
              flush=True)


class _RunOptions(TypedDict):
    """The recipe arguments every run of the demo shares (a fine-tune takes its tokenizer from its checkpoint)."""

    tracking_uri: str
    experiment: str
    corpus_max_mb: float
    progress_bar: bool
    print_outcome: bool


class _TokenizedRunOptions(_RunOptions):
    """The shared arguments of a run that trains with the workspace tokenizer (pretraining, from scratch)."""

    vocab_size: int


class _FitOptions(TypedDict):
    """How each run's refit is made."""

    refit_bootstrap: int


def _prepare_workspace(common: _TokenizedRunOptions, size: str) -> None:
    """Build the corpora and the tokenizer the runs share, once, before the ETA's clock starts (on a fresh home
    this is a minute no run's compute explains)."""
    from transfer_laws.scripts import pretrain, scratch, workspace
    from transfer_laws.scripts._common import megabytes

    started = time.monotonic()
    source = pretrain.Args(preset=size, **common)
    target = scratch.Args(preset=size, d_f_tokens=1, **common)
    workspace.corpus_dir(source.corpus, megabytes(source.corpus_max_mb))
    workspace.tokenizer_dir(source.tokenizer_corpus, source.vocab_size, megabytes(source.tokenizer_max_mb))
    workspace.corpus_dir(target.target, megabytes(target.corpus_max_mb))
    print(f"corpora and tokenizer ready ({time.monotonic() - started:.0f}s)", flush=True)


def plan_compute(args: Args) -> list[float]:
    """Planned N x tokens of every run the demo makes, in the order it makes them (the pin loops of --full aside)."""
    from transfer_laws.registry.next_runs import preset_n
    from transfer_laws.scripts._eta import planned_tokens

    per_step = 8 * 128  # the recipes' default batch x context
    compute: list[float] = []
    sources = len(SOURCES_FULL) if args.full else 1
    for size, steps in zip(args.sizes, args.pretrain_steps, strict=True):
        n = preset_n(size)
        for _ in range(sources):
            compute.append(n * steps * per_step)
            compute += [n * planned_tokens(d, per_step, args.run_max_steps) for d in args.d_f_tokens]
        compute += [n * planned_tokens(d, per_step, args.run_max_steps) for d in args.scratch_tokens]
    return compute


def _checkpoint_name(args: Args, source: str) -> str:
    return args.checkpoint_name if source == "text" else checkpoint_model_name(source)


def run(args: Args) -> Any:
    from transfer_laws.registry.schema import law_name
    from transfer_laws.registry.tracking import is_embedded, use_tracking_uri
    from transfer_laws.scripts import finetune, pretrain, scratch

    started = time.monotonic()
    args = _apply_quick(args)
    for name in ("pretrain_steps", "pretrain_seconds"):
        if len(getattr(args, name)) != len(args.sizes):
            raise ValueError(f"--{name.replace('_', '-')} needs one value per size ({len(args.sizes)}), got "
                             f"{len(getattr(args, name))}")
    uri = use_tracking_uri(args.tracking_uri)
    sources = SOURCES_FULL if args.full else ("text",)
    laws = [law_name(source, "python") for source in sources]
    print(f"transfer-laws demo: law{'s' if len(laws) > 1 else ''} {', '.join(laws)}, store {uri}", flush=True)
    without_tokenizer = _RunOptions(tracking_uri=uri, experiment=args.experiment, corpus_max_mb=args.corpus_max_mb,
                                    progress_bar=args.progress_bar, print_outcome=False)
    common = _TokenizedRunOptions(**without_tokenizer, vocab_size=args.vocab_size)
    fit_options = _FitOptions(refit_bootstrap=args.bootstrap)

    def capped(recipe: Any) -> dict[str, Any]:
        return {"train": replace(recipe.TRAIN, max_steps=args.run_max_steps,
                                 patience=args.patience or recipe.TRAIN.patience)}

    _prepare_workspace(common, args.sizes[0])
    progress = _Progress(plan_compute(args))  # its clock starts after the one-off corpus and tokenizer building

    by_source: dict[str, dict[str, dict[str, Any]]] = {source: {} for source in sources}
    last_refit = None
    for size, steps, seconds in zip(args.sizes, args.pretrain_steps, args.pretrain_seconds, strict=True):
        alias = f"demo-{size}"
        scratch_runs: dict[int, Any] = {}
        for source in sources:
            train = replace(pretrain.TRAIN, max_steps=steps, max_time_s=seconds)
            registered = pretrain.run(pretrain.Args(preset=size, corpus=source, register_as=_checkpoint_name(
                args, source), alias=alias, train=train, **common))
            on = f" on {source}" if len(sources) > 1 else ""  # the short demo's lines stay as they were
            progress.line(f"pretrained {size}{on}, registered {registered.uri} as @{alias}")
        for source in sources:
            per_size: dict[str, Any] = {ROLE_FINETUNE: {}, ROLE_SCRATCH: scratch_runs}
            for d_f in args.d_f_tokens:
                run_ = finetune.run(finetune.Args(parent=f"models:/{_checkpoint_name(args, source)}@{alias}",
                                                  d_f_tokens=d_f, **without_tokenizer, **fit_options,
                                                  **capped(finetune), refit_plots=False))
                per_size[ROLE_FINETUNE][d_f] = run_
                last_refit = run_.refit or last_refit
                origin = f" from {source}" if len(sources) > 1 else ""
                progress.line(f"finetune {size}{origin} D_F={d_f:,}: loss {run_.best_test_loss:.3f}  "
                              f"{_refit_text(run_.refit)}")
            by_source[source][size] = per_size
        for d in args.scratch_tokens:
            # Every landing refits; only the last renders the plots (matplotlib is most of a refit's time).
            last = size == args.sizes[-1] and d == args.scratch_tokens[-1]
            run_ = scratch.run(scratch.Args(preset=size, d_f_tokens=d, **common, **fit_options, **capped(scratch),
                                            refit_plots=last))
            scratch_runs[d] = run_
            last_refit = run_.refit or last_refit
            progress.line(f"scratch  {size} D={d:,}: loss {run_.best_test_loss:.3f}  {_refit_text(run_.refit)}")
        for source in sources:
            by_source[source][size]["n_params"] = run_.n_params

    _crown_largest(uri, [_checkpoint_name(args, source) for source in sources])
    if not is_embedded(uri) or args.full:
        # On a server the app plugin refits as runs land; one explicit refit waits for a version covering all of
        # them (idempotent: if the hook already registered these inputs, it says "unchanged").
        from transfer_laws.registry.refit import refit_law

        last_refit = [refit_law(law, tracking_uri=uri, bootstrap=args.bootstrap) for law in laws]
    for source in sources:
        if len(sources) > 1:
            print(f"\n== {source} -> python ==")
        _print_findings(by_source[source], args, SOURCE_WORDS.get(source, source))
    if args.full:
        last_refit = _pin_laws(args, uri, laws, sources, started, capped(scratch)["train"])
    _print_law(laws, uri, last_refit)
    if args.full:
        _print_source_comparison(uri)
    return 0


def _crown_largest(uri: str, names: list[str]) -> None:
    """Point ``@champion`` at each checkpoint model's largest pretrained size, as a team marks the checkpoint to
    start from (the README's ``finetune --from models:/pretrained-text@champion``)."""
    from transfer_laws.registry.schema import CKPT_TAG_N, DEFAULT_CHECKPOINT_ALIAS
    from transfer_laws.registry.tracking import client_for

    client = client_for(uri)
    for name in names:
        versions = [v for v in client.search_model_versions(f"name = '{name}'") if CKPT_TAG_N in (v.tags or {})]
        if versions:
            best = max(versions, key=lambda v: (float(v.tags[CKPT_TAG_N]), int(v.version)))
            client.set_registered_model_alias(name, DEFAULT_CHECKPOINT_ALIAS, str(best.version))
            print(f"@{DEFAULT_CHECKPOINT_ALIAS}: models:/{name}/{best.version} (N={float(best.tags[CKPT_TAG_N]):,.0f}, "
                  "the largest)", flush=True)


def _print_source_comparison(uri: str) -> None:
    """The paper's Table-1 comparison on the two laws --full pinned: does the mix transfer more at small D_F, is its
    alpha lower, is beta the same (each with its interval)."""
    from transfer_laws.scripts._map_text import print_source_comparison

    print("\n== mix -> python against text -> python (Hernandez et al. 2021, Table 1) ==")
    try:
        print_source_comparison("python", base="text", other="mix", tracking_uri=uri)
    except LookupError as exc:  # a law without a fit yet
        print(f"no comparison yet: {exc}")


def pin_args(args: Args, uri: str, law: str, source: str, minutes: float, train: Any) -> Any:
    """``transfer-laws pin``'s arguments for one law of --full: the demo's store, checkpoints and recipe."""
    from transfer_laws.scripts import pin

    return pin.Args(law=law, alpha_halfwidth=args.alpha_halfwidth, budget=f"{minutes:.2f}min",
                    from_template=f"models:/{_checkpoint_name(args, source)}@demo-{{size}}", tracking_uri=uri,
                    experiment=args.experiment, corpus_max_mb=args.corpus_max_mb, vocab_size=args.vocab_size,
                    progress_bar=args.progress_bar, print_outcome=False, bootstrap=args.bootstrap,
                    study=f"demo-pin-{law}", train=train, refit_bootstrap=args.bootstrap, refit_plots=False)


def _pin_laws(args: Args, uri: str, laws: list[str], sources: tuple[str, ...], started: float,
              train: Any) -> list[Any]:
    """--full: ``transfer-laws pin`` on each law in turn, sharing what the seed runs left of --full-minutes."""
    from transfer_laws.registry.refit import refit_law
    from transfer_laws.scripts import pin
    from transfer_laws.scripts._errors import UserError

    results = []
    for i, (law, source) in enumerate(zip(laws, sources, strict=True)):
        left = args.full_minutes - (time.monotonic() - started) / 60
        share = left / (len(laws) - i)
        print(f"\n== pin {law}: alpha +-{args.alpha_halfwidth:g}, {max(share, 0):.1f} min of training ==", flush=True)
        if share > 0.5:
            try:
                pin.run(pin_args(args, uri, law, source, share, train))
            except UserError as exc:
                print(f"pin {law}: {exc}")
        else:
            spent = (time.monotonic() - started) / 60
            print(f"No time left for the pin loop: the seed runs took {spent:.0f} of --full-minutes "
                  f"{args.full_minutes:g}. Continue where this stopped (the study resumes; `transfer-laws predict "
                  f"--law {law} --next` shows the advised runs and what they cost):\n"
                  f"  transfer-laws pin --law {law} --alpha-halfwidth {args.alpha_halfwidth:g} --budget 60min "
                  f"--from-template 'models:/{_checkpoint_name(args, source)}@demo-{{size}}' --study demo-pin-{law} "
                  f"--tracking-uri {uri}")
        results.append(refit_law(law, tracking_uri=uri, bootstrap=args.bootstrap))
    return results


def _refit_text(refit: Any) -> str:
    if refit is None:
        return ""
    results = refit if isinstance(refit, list) else [refit]
    parts = []
    for r in results:
        if r.status == "registered":
            parts.append(f"-> refit {r.law}: new version {r.version} (alpha={r.fit.alpha:.3f})")
        elif r.status == "unchanged":
            parts.append(f"-> refit {r.law}: unchanged")
        else:
            parts.append(f"-> refit {r.law}: not yet ({r.reason})")
    return "; ".join(parts)


def _print_findings(results: dict[str, dict[str, Any]], args: Args, source: str = "English") -> None:
    """The paper's qualitative findings, checked on our own runs and said plainly either way.

    A fine-tune at D_F is compared with the scratch run of the same size trained on the smallest D >= D_F: beating
    a model that saw at least as much Python is what "pretraining helps at small D_F" means.
    """
    print("\nWhat the runs show (best held-out Python loss, nats/token):")
    print(f"{'size':>6} {'N':>10} {'D_F':>9} {'fine-tuned':>11} {'scratch D':>10} {'scratch':>9} {'gain':>7}")
    wins, comparisons = 0, 0
    gains_by_n: dict[int, list[tuple[int, float]]] = {}
    for size, per in results.items():
        for d_f, ft in per[ROLE_FINETUNE].items():
            larger = sorted(d for d in per[ROLE_SCRATCH] if d >= d_f)
            if not larger:
                continue
            sc = per[ROLE_SCRATCH][larger[0]]
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


def _latest_fit(uri: str, law: str, results: list[Any]) -> list[Any]:
    """The fit of the version a refit found already covering the runs (status ``unchanged``), if any."""
    from transfer_laws.registry.forecast import load_version_fit
    from transfer_laws.registry.schema import law_model_name
    from transfer_laws.registry.tracking import client_for

    versions = [r.version for r in results if r.status == "unchanged" and r.version]
    if not versions:
        return []
    client = client_for(uri)
    return [load_version_fit(client, uri, client.get_model_version(law_model_name(law), versions[-1]))]


def _print_law(laws: str | list[str], uri: str, last_refit: Any) -> None:
    from transfer_laws.registry.schema import LAW_ALIAS, law_model_name, law_page_url

    laws = [laws] if isinstance(laws, str) else laws
    results = last_refit if isinstance(last_refit, list) else [last_refit] if last_refit else []
    for law in laws:
        print()
        mine = [r for r in results if getattr(r, "law", law) == law]
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
