"""``transfer-laws demo``: from nothing to a fitted transfer law on the embedded store, on a CPU.

Builds the corpora and the tokenizer, pretrains GPTs of a few sizes on English text, registers each checkpoint,
fine-tunes each on Python at a grid of D_F budgets, trains the same sizes from scratch on a grid of D (the D_E
reference curves), lets every landing run refit the law ``text-to-python`` (a new registered version whenever the
eligible runs change), then prints the law with intervals, what the data shows, and how to browse it all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, TypedDict

from transfer_laws.lightning_modules.config import TrainConfig, at_least, positive
from transfer_laws.plugin.recipes import (
    BadInput,
    FinetuneArgs,
    PretrainArgs,
    ScratchArgs,
    UserError,
    megabytes,
    register_pretrained,
    run_finetune,
    run_pretrain,
    run_scratch,
    workspace,
)
from transfer_laws.plugin.recipes import finetune as finetune_recipe
from transfer_laws.plugin.recipes import pretrain as pretrain_recipe
from transfer_laws.plugin.recipes import scratch as scratch_recipe
from transfer_laws.plugin.sweeps.eta import ComputeEta, planned_tokens
from transfer_laws.plugin.sweeps.say import Say, quiet
from transfer_laws.plugin.training import TrainedRun
from transfer_laws.registry.reader import read_checkpoint_version
from transfer_laws.registry.records import MAX_D
from transfer_laws.registry.refit import RefitResult, refit_law
from transfer_laws.registry.schema import (
    DEFAULT_CHECKPOINT_ALIAS,
    DEFAULT_EXPERIMENT,
    checkpoint_model_name,
    law_name,
)
from transfer_laws.registry.tracking import client_for, is_embedded, use_tracking_uri

if TYPE_CHECKING:
    from transfer_laws.plugin.sweeps.pin import PinArgs


@dataclass(kw_only=True)
class DemoArgs:
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


def apply_preset(args: DemoArgs) -> DemoArgs:
    if args.quick and args.full:
        raise BadInput("--quick and --full are different demos: give one")
    preset = QUICK if args.quick else FULL if args.full else {}
    defaults = DemoArgs()
    for key, value in preset.items():
        if getattr(args, key) == getattr(defaults, key):  # explicit flags win over the preset
            setattr(args, key, value)
    return args


class _Progress:
    """One line per finished run: done / total and an ETA weighted by compute (N x tokens) of the runs left."""

    def __init__(self, compute: list[float], say: Say) -> None:
        self.eta = ComputeEta(compute)
        self.say = say

    def line(self, text: str) -> None:
        self.eta.finish_one()
        left = self.eta.remaining_s()
        eta = "   -" if left != left else f"{left:4.0f}"  # NaN before any run finished
        self.say(f"[{self.eta.done}/{len(self.eta.compute)} | {self.eta.elapsed():5.0f}s | ETA {eta}s] {text}")


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


def _prepare_workspace(common: _TokenizedRunOptions, size: str, say: Say) -> None:
    """Build the corpora and the tokenizer the runs share, once, before the ETA's clock starts (on a fresh home
    this is a minute no run's compute explains)."""

    started = time.monotonic()
    source = PretrainArgs(preset=size, **common)
    target = ScratchArgs(preset=size, d_f_tokens=1, **common)
    workspace.corpus_dir(source.corpus, megabytes(source.corpus_max_mb))
    workspace.tokenizer_dir(source.tokenizer_corpus, source.vocab_size, megabytes(source.tokenizer_max_mb))
    workspace.corpus_dir(target.target, megabytes(target.corpus_max_mb))
    say(f"corpora and tokenizer ready ({time.monotonic() - started:.0f}s)")


def plan_compute(args: DemoArgs) -> list[float]:
    """Planned N x tokens of every run the demo makes, in the order it makes them (the pin loops of --full aside)."""
    from transfer_laws.registry.next_runs import preset_n  # lazy: numpy (0.2 s), which demo --help needs not

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


class _Runs(TypedDict):
    finetune: dict[int, TrainedRun]
    """D_F -> the fine-tune of this size at that budget."""
    scratch: dict[int, TrainedRun]
    """D -> the scratch run of this size on that many tokens (shared by every source)."""


class SizeRuns(_Runs, total=False):
    """One size's runs from one source."""

    n_params: int
    """N of the size (set once its scratch runs finished)."""


@dataclass(frozen=True)
class DemoSeeds:
    """What the demo's seed runs left: the store, its laws and every run by source, size, role and budget."""

    uri: str
    """The activated tracking URI the runs landed in."""
    laws: list[str]
    """``<source>-to-python`` per source."""
    sources: tuple[str, ...]
    """The pretraining sources (text; with --full also the mix)."""
    by_source: dict[str, dict[str, SizeRuns]]
    """source -> size -> its runs."""
    last_refit: list[RefitResult] | None
    """The last refit's result(s) (``RefitResult`` or a list of them), None when no refit ran."""
    started: float
    """``time.monotonic()`` when the demo started (the --full budget counts from it)."""


def capped_train(args: DemoArgs, recipe: TrainConfig) -> TrainConfig:
    """A recipe's loop settings capped at the demo's --run-max-steps (and its --patience, when given)."""
    return replace(recipe, max_steps=args.run_max_steps, patience=args.patience or recipe.patience)


def _checkpoint_name(args: DemoArgs, source: str) -> str:
    return args.checkpoint_name if source == "text" else checkpoint_model_name(source)


def train_seed_runs(args: DemoArgs, *, say: Say = quiet) -> DemoSeeds:
    """The demo's seed runs: pretrain each size (each source with --full), fine-tune and train from scratch, crown
    the largest checkpoint, and refit (on a server, or with --full) once every run has landed. Its progress lines
    (one per run, with an ETA) go to ``say``."""
    started = time.monotonic()
    args = apply_preset(args)
    for name in ("pretrain_steps", "pretrain_seconds"):
        if len(getattr(args, name)) != len(args.sizes):
            raise ValueError(f"--{name.replace('_', '-')} needs one value per size ({len(args.sizes)}), got "
                             f"{len(getattr(args, name))}")
    uri = use_tracking_uri(args.tracking_uri)
    sources = SOURCES_FULL if args.full else ("text",)
    laws = [law_name(source, "python") for source in sources]
    say(f"transfer-laws demo: law{'s' if len(laws) > 1 else ''} {', '.join(laws)}, store {uri}")
    without_tokenizer = _RunOptions(tracking_uri=uri, experiment=args.experiment, corpus_max_mb=args.corpus_max_mb,
                                    progress_bar=args.progress_bar, print_outcome=False)
    common = _TokenizedRunOptions(**without_tokenizer, vocab_size=args.vocab_size)
    fit_options = _FitOptions(refit_bootstrap=args.bootstrap)

    _prepare_workspace(common, args.sizes[0], say)
    progress = _Progress(plan_compute(args), say)  # its clock starts after the one-off corpus and tokenizer building

    by_source: dict[str, dict[str, SizeRuns]] = {source: {} for source in sources}
    last_refit: list[RefitResult] | None = None
    for size, steps, seconds in zip(args.sizes, args.pretrain_steps, args.pretrain_seconds, strict=True):
        alias = f"demo-{size}"
        scratch_runs: dict[int, TrainedRun] = {}
        for source in sources:
            train = replace(pretrain_recipe.TRAIN, max_steps=steps, max_time_s=seconds)
            pretrain_args = PretrainArgs(preset=size, corpus=source, register_as=_checkpoint_name(args, source),
                                         alias=alias, train=train, **common)
            registered = register_pretrained(run_pretrain(pretrain_args), pretrain_args)
            assert registered is not None  # --register-as is a name
            on = f" on {source}" if len(sources) > 1 else ""  # the short demo's lines stay as they were
            progress.line(f"pretrained {size}{on}, registered {registered.uri} as @{alias}")
        for source in sources:
            per_size = SizeRuns(finetune={}, scratch=scratch_runs)
            for d_f in args.d_f_tokens:
                run_ = run_finetune(FinetuneArgs(parent=f"models:/{_checkpoint_name(args, source)}@{alias}",
                                                 d_f_tokens=d_f, **without_tokenizer, **fit_options,
                                                 train=capped_train(args, finetune_recipe.TRAIN), refit_plots=False))
                per_size["finetune"][d_f] = run_
                last_refit = run_.refit or last_refit
                origin = f" from {source}" if len(sources) > 1 else ""
                progress.line(f"finetune {size}{origin} D_F={d_f:,}: loss {run_.best_test_loss:.3f}  "
                              f"{_refit_text(run_.refit)}")
            by_source[source][size] = per_size
        for d in args.scratch_tokens:
            # Every landing refits; only the last renders the plots.
            last = size == args.sizes[-1] and d == args.scratch_tokens[-1]
            run_ = run_scratch(ScratchArgs(preset=size, d_f_tokens=d, **common, **fit_options,
                                           train=capped_train(args, scratch_recipe.TRAIN), refit_plots=last))
            scratch_runs[d] = run_
            last_refit = run_.refit or last_refit
            progress.line(f"scratch  {size} D={d:,}: loss {run_.best_test_loss:.3f}  {_refit_text(run_.refit)}")
        for source in sources:
            by_source[source][size]["n_params"] = int(run_.n_params)

    _crown_largest(uri, [_checkpoint_name(args, source) for source in sources], say)
    if not is_embedded(uri) or args.full:
        # On a server the app plugin refits as runs land; one explicit refit waits for a version covering all of
        # them (idempotent: if the hook already registered these inputs, it says "unchanged").
        last_refit = [refit_law(law, tracking_uri=uri, bootstrap=args.bootstrap) for law in laws]
    return DemoSeeds(uri=uri, laws=laws, sources=sources, by_source=by_source, last_refit=last_refit,
                     started=started)


def _crown_largest(uri: str, names: list[str], say: Say) -> None:
    """Point ``@champion`` at each checkpoint model's largest pretrained size, as a team marks the checkpoint to
    start from (the README's ``finetune --from models:/pretrained-text@champion``)."""
    client = client_for(uri)
    for name in names:
        sized = [(c.n_params, c.version) for c in map(read_checkpoint_version,
                                                       client.search_model_versions(f"name = '{name}'"))
                 if c.n_params is not None]
        if sized:
            n, version = max(sized)
            client.set_registered_model_alias(name, DEFAULT_CHECKPOINT_ALIAS, str(version))
            say(f"@{DEFAULT_CHECKPOINT_ALIAS}: models:/{name}/{version} (N={n:,}, the largest)")


def pin_args(args: DemoArgs, uri: str, law: str, source: str, minutes: float, train: TrainConfig) -> PinArgs:
    """``transfer-laws pin``'s arguments for one law of --full: the demo's store, checkpoints and recipe."""
    from transfer_laws.plugin.sweeps.pin import PinArgs  # lazy: the pin loop imports numpy; demo --help needs not

    return PinArgs(law=law, alpha_halfwidth=args.alpha_halfwidth, budget=f"{minutes:.2f}min",
                    from_template=f"models:/{_checkpoint_name(args, source)}@demo-{{size}}", tracking_uri=uri,
                    experiment=args.experiment, corpus_max_mb=args.corpus_max_mb, vocab_size=args.vocab_size,
                    progress_bar=args.progress_bar, print_outcome=False, bootstrap=args.bootstrap,
                    study=f"demo-pin-{law}", train=train, refit_bootstrap=args.bootstrap, refit_plots=False)


def pin_laws(args: DemoArgs, seeds: DemoSeeds, *, say: Say = quiet) -> list[RefitResult]:
    """--full: ``transfer-laws pin`` on each law in turn, sharing what the seed runs left of --full-minutes; what each
    loop did goes to ``say``."""
    from transfer_laws.plugin.sweeps.pin import run_pin  # lazy: numpy (0.2 s), which demo --help needs not

    uri, laws, sources, started = seeds.uri, seeds.laws, seeds.sources, seeds.started
    train = capped_train(args, scratch_recipe.TRAIN)

    results = []
    for i, (law, source) in enumerate(zip(laws, sources, strict=True)):
        left = args.full_minutes - (time.monotonic() - started) / 60
        share = left / (len(laws) - i)
        say(f"\n== pin {law}: alpha +-{args.alpha_halfwidth:g}, {max(share, 0):.1f} min ==")
        if share > 0.5:
            deadline = time.monotonic() + share * 60  # wall clock: the refits between runs count as well
            try:
                for line in run_pin(pin_args(args, uri, law, source, share, train), say=say,
                                    deadline=deadline).lines():
                    say(line)
            except UserError as exc:
                say(f"pin {law}: {exc}")
        else:
            spent = (time.monotonic() - started) / 60
            say(f"No time left for the pin loop: the seed runs took {spent:.0f} of --full-minutes "
                f"{args.full_minutes:g}. Continue where this stopped (the study resumes; `transfer-laws predict "
                f"--law {law} --next` shows the advised runs and what they cost):\n"
                f"  transfer-laws pin --law {law} --alpha-halfwidth {args.alpha_halfwidth:g} --budget 60min "
                f"--from-template 'models:/{_checkpoint_name(args, source)}@demo-{{size}}' --study demo-pin-{law} "
                f"--tracking-uri {uri}")
        results.append(refit_law(law, tracking_uri=uri, bootstrap=args.bootstrap))
    return results


def _refit_text(refit: list[RefitResult] | None) -> str:
    parts = []
    for r in refit or []:
        if r.status == "registered" and r.fit is not None:
            parts.append(f"-> refit {r.law}: new version {r.version} (alpha={r.fit.alpha:.3f})")
        elif r.status == "unchanged":
            parts.append(f"-> refit {r.law}: unchanged")
        else:
            parts.append(f"-> refit {r.law}: not yet ({r.reason})")
    return "; ".join(parts)
