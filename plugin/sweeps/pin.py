"""``transfer-laws pin``: train the runs next-run advice chooses until the law is determined, or the budget is spent.

Every chosen run is a trial of one Optuna study (the sweep's machinery: ``plugin/sweeps/study.py``'s ``open_study`` with
heartbeats and retry of crashed trials, its parent run and recipe trainer), so any number of ``transfer-laws pin``
processes on one storage (SQLite locally, PostgreSQL across machines) share the work: each trains what is waiting,
then refits, asks the advice and claims the first planned run nobody holds. A run is claimed by enqueueing it with
its fixed parameters (role, size, tokens, seed); of two identical claims only the lowest-numbered trial trains, so
no two workers train the same run. A killed worker's trial stops beating, is failed by the next worker and is
re-enqueued; started again, the loop resumes from the study. Each run carries ``transfer.pin`` and
``transfer.pin_reason`` (why it was chosen) from its start. The loop itself is ``registry/pin.py``.

Exit codes: 0 pinned, 3 budget spent (what is missing and the predicted cost to finish are printed), 4 no candidate
run helps, 2 bad input, 1 failed.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from transfer_laws.lightning_modules.config import BudgetError, OptimConfig, TrainConfig, default_from, positive
from transfer_laws.plugin.recipes import (
    BadInput,
    DataArgs,
    PretrainArgs,
    RefitArgs,
    StoreArgs,
    TokenizerArgs,
    UserError,
    run_pretrain,
)
from transfer_laws.plugin.recipes import pretrain as pretrain_recipe
from transfer_laws.plugin.recipes import scratch as scratch_recipe
from transfer_laws.plugin.sweeps.args import SweepArgs
from transfer_laws.plugin.sweeps.say import Say, note, quiet, warn
from transfer_laws.plugin.sweeps.study import Cell, ensure_parent_run, fixed_params, open_study, trial_loss
from transfer_laws.plugin.sweeps.sweep import recipe_args, recipe_trainer
from transfer_laws.plugin.training import RunExtras
from transfer_laws.registry.checkpoints import register_checkpoint
from transfer_laws.registry.fit.advice import Candidate, Target
from transfer_laws.registry.next_runs import (
    law_candidates,
    registered_name,
    split_limit,
    wall_time,
    within_corpus,
)
from transfer_laws.registry.pin import Budget, PinOutcome, PinRun, Spent, format_outcome, pin
from transfer_laws.registry.reader import read_law_inputs
from transfer_laws.registry.refit import RefitResult, refit_law
from transfer_laws.registry.schema import (
    ROLE_FINETUNE,
    ROLE_PRETRAIN,
    ROLE_SCRATCH,
    TAG_PIN,
    TAG_PIN_REASON,
    demo_checkpoint_template,
    parse_law,
)
from transfer_laws.registry.tracking import client_for, use_tracking_uri

if TYPE_CHECKING:
    from optuna import Study, Trial
    from optuna.trial import FrozenTrial, TrialState

    from transfer_laws.registry.fit import TransferLaw

KEYS = ("pin_role", "pin_size", "pin_n", "pin_tokens", "pin_seed")
"""A pin trial's fixed parameters: the run it trains."""
ATTR_REASON = "pin_reason"
ATTR_FLOPS = "flops"
ATTR_RUN_ID = "run_id"
ATTR_TOO_LARGE = "pin_too_large"
"""On a failed trial: the target corpus cannot supply its tokens (``BudgetError``), so no run that large is tried."""
MAX_FAILURES = 3


@dataclass(kw_only=True)
class PinArgs(StoreArgs, RefitArgs, TokenizerArgs, DataArgs):
    """Arguments of ``transfer-laws pin``."""

    law: str = "text-to-python"
    """The law to pin (``<source>-to-<target>``); its runs in the store are the starting point."""
    alpha_halfwidth: float = positive(0.1)
    """Target: alpha's 95% interval within +- this."""
    beta_excludes_0: bool = True
    """Target: beta's 95% interval excludes 0."""
    budget: str = "60min"
    """What the loop may spend: FLOPs (e.g. 3e15), minutes of training (e.g. 45min), or both (3e15,45min)."""
    from_template: str | None = None
    """Registered checkpoint per size that fine-tunes start from (a new size is pretrained and registered there);
    unset: the demo's checkpoints of the law's source, models:/pretrained-<source>@demo-{size}."""
    target: str = "python"
    """Target corpus of the fine-tunes and scratch runs."""
    evals_per_epoch: float | None = positive(2.0)
    """Held-out evaluations per pass over each run's training data (early stopping counts these)."""
    epochs: float = positive(3.0)
    """Expected passes over each run's data before early stopping, for the compute estimate (6 N tokens epochs)."""
    bootstrap: int = positive(1000)
    """Bootstrap draws of each refit (the intervals the target is judged on)."""
    advice_draws: int = positive(200)
    """Bootstrap draws per candidate in the advice's simulation."""
    study: str | None = None
    """Optuna study name (default: pin-<law>); workers join by giving the same study and storage."""
    storage: str | None = None
    """Optuna storage URL: sqlite:///... or postgresql+psycopg2://...; default: optuna.db under TRANSFER_LAWS_HOME."""
    heartbeat_s: int = 30
    """Seconds between a running trial's heartbeats."""
    grace_s: int = 120
    """A running trial silent this long counts as crashed and is retried."""
    max_retry: int = 2
    """How often a crashed run is retried."""
    optim: OptimConfig = default_from(OptimConfig(lr=1e-3))
    """Optimiser settings of every run."""
    train: TrainConfig = default_from(scratch_recipe.TRAIN)
    """Training loop settings of every run (the seed is the run's own)."""
    pretrain_max_s: float = positive(600.0)
    """Wall-clock cap on a new size's pretraining (its steps: 20 tokens per parameter, the demo's recipe)."""


def parse_budget(text: str) -> Budget:
    """``3e15`` (FLOPs), ``45min`` (minutes of training), or both separated by a comma; ValueError otherwise."""
    flops, minutes = math.inf, math.inf
    for part in (p.strip().lower() for p in text.split(",") if p.strip()):
        m = re.fullmatch(r"([0-9.e+]+)\s*(min|m|flop|flops)?", part)
        try:
            value = float(m.group(1)) if m else math.nan
        except ValueError:
            value = math.nan
        if not (m and math.isfinite(value) and value > 0):
            raise ValueError(f"--budget {text!r}: give FLOPs (3e15), minutes (45min) or both (3e15,45min)")
        if m.group(2) in ("min", "m"):
            minutes = value
        else:
            flops = value
    if flops == math.inf and minutes == math.inf:
        raise ValueError(f"--budget {text!r}: give FLOPs (3e15), minutes (45min) or both (3e15,45min)")
    return Budget(flops=flops, minutes=minutes)


def _run_of(params: dict[str, str | int | float] | None) -> PinRun | None:
    if not params or set(params) != set(KEYS):
        return None
    return PinRun(str(params["pin_role"]), str(params["pin_size"]), float(params["pin_n"]), int(params["pin_tokens"]),
                  int(params["pin_seed"]))


def _params(run: PinRun) -> dict[str, str | int | float]:
    return {"pin_role": run.role, "pin_size": run.size, "pin_n": run.n_params, "pin_tokens": run.tokens,
            "pin_seed": run.seed}


Train = Callable[[PinRun, str, int], tuple[str, float]]
"""``train(run, reason, trial_number)`` -> (MLflow run id, best held-out loss)."""


@dataclass
class StudyQueue:
    """``registry.pin.RunQueue`` on an Optuna study: claims are enqueued trials, workers pop them."""

    study: Study
    train: Train
    log: Callable[[str], None] = field(default=lambda _: None)
    failures: int = 0
    """Trials this worker saw fail in a row (MAX_FAILURES stops the loop: training itself is broken)."""

    def _trials(self, *states: TrialState) -> list[tuple[FrozenTrial, PinRun]]:
        out = []
        for t in self.study.get_trials(deepcopy=False, states=states or None):
            run = _run_of(fixed_params(t))
            if run is not None:
                out.append((t, run))
        return out

    def held(self) -> list[PinRun]:
        from optuna.trial import TrialState

        return [r for _, r in self._trials(TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE,
                                           TrialState.FAIL)]

    def finished(self) -> list[tuple[PinRun, str, float]]:
        """(run, MLflow run id, loss) of every completed run, in trial order."""
        from optuna.trial import TrialState

        return [(r, str(t.user_attrs.get(ATTR_RUN_ID, "")), trial_loss(t))
                for t, r in self._trials(TrialState.COMPLETE)]

    def token_limit(self) -> float:
        """Fewest tokens of a fine-tune or scratch run the target corpus could not supply (inf: none yet)."""
        from optuna.trial import TrialState

        return min((float(r.tokens) for t, r in self._trials(TrialState.FAIL)
                    if ATTR_TOO_LARGE in t.user_attrs and r.role != ROLE_PRETRAIN), default=math.inf)

    def spent(self) -> Spent:
        from optuna.trial import TrialState

        done = self._trials(TrialState.COMPLETE)
        minutes = sum((t.datetime_complete - t.datetime_start).total_seconds() / 60 for t, _ in done
                      if t.datetime_complete and t.datetime_start)
        return Spent(flops=sum(float(t.user_attrs.get(ATTR_FLOPS, 0.0)) for t, _ in done), minutes=minutes,
                     runs=len(done))

    def claim(self, runs: Sequence[PinRun], reason: str, flops: Sequence[float]) -> None:
        for run, cost in zip(runs, flops, strict=True):
            self.study.enqueue_trial(_params(run), user_attrs={ATTR_REASON: reason[:5000], ATTR_FLOPS: cost},
                                     skip_if_exists=True)

    def _duplicate(self, number: int, run: PinRun) -> bool:
        """Whether a lower-numbered live trial holds the same run (it trains; this one does not)."""
        from optuna.trial import TrialState

        return any(t.number < number and r == run for t, r in
                   self._trials(TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE))

    def work_one(self) -> bool:
        import warnings

        import optuna
        from optuna.storages._heartbeat import get_heartbeat_thread  # what study.optimize uses; no public form
        from optuna.trial import TrialState

        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(self.study)
        if not self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return False
        with _pop_lock(self.study):  # on SQLite two workers could pop the same waiting trial
            trial = self.study.ask()
        state, value = TrialState.COMPLETE, None
        with get_heartbeat_thread(trial._trial_id, self.study._storage):
            try:
                value = self._objective(trial)
            except optuna.TrialPruned:
                state = TrialState.PRUNED
            except BudgetError as exc:  # the corpus is too small for this run: the loop asks for none as large
                state = TrialState.FAIL
                trial.set_user_attr(ATTR_TOO_LARGE, str(exc)[:1000])
                warn(f"pin: trial {trial.number} cannot be trained: {exc}; no run as large is tried")
            except Exception as exc:
                state = TrialState.FAIL
                warn(f"pin: trial {trial.number} failed: {type(exc).__name__}: {exc}")
        self.study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
        too_large = state == TrialState.FAIL and ATTR_TOO_LARGE in trial.user_attrs
        self.failures = self.failures + 1 if state == TrialState.FAIL and not too_large else 0
        if self.failures >= MAX_FAILURES:
            raise UserError(f"pin: {self.failures} runs in a row failed (the last: trial {trial.number}); see the "
                            "errors above")
        return True

    def _objective(self, trial: Trial) -> float:
        import optuna

        run = _run_of(fixed_params(trial))
        if run is None:  # ask() made a fresh trial: the queue emptied under us
            raise optuna.TrialPruned("no waiting run was left")
        if self._duplicate(trial.number, run):
            raise optuna.TrialPruned("another trial holds the same run")
        reason = str(self.study._storage.get_trial_user_attrs(trial._trial_id).get(ATTR_REASON, ""))
        began = time.monotonic()
        run_id, loss = self.train(run, reason, trial.number)
        trial.set_user_attr(ATTR_RUN_ID, run_id)
        self.log(f"pin: trained {run.role} {run.size or run.n_params} {run.tokens} tokens seed {run.seed} "
                 f"in {(time.monotonic() - began) / 60:.1f} min: loss {loss:.4g}")
        return loss


@contextmanager
def _pop_lock(study: Study) -> Iterator[None]:
    """An exclusive file lock beside a SQLite storage while a worker pops a trial (SQLite has no row locks, so two
    processes on one machine could take the same waiting trial); other storages lock the row themselves."""
    storage = study._storage
    url = str(getattr(getattr(storage, "_backend", storage), "url", ""))
    if not url.startswith("sqlite:///"):
        yield
        return
    import fcntl

    with open(url.removeprefix("sqlite:///") + ".pop-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_queue(args: PinArgs, train: Train, log: Callable[[str], None]) -> StudyQueue:
    study = open_study(args.study or f"pin-{args.law}", args.storage, heartbeat_s=args.heartbeat_s,
                       grace_s=args.grace_s, max_retry=args.max_retry)
    return StudyQueue(study, train, log)


def recipe_train(args: PinArgs, parent_run_id: str, study_name: str, *, say: Say = quiet) -> Train:
    """Train a PinRun with the sweep's recipes (fine-tune, scratch) or pretrain a new size and register it; with
    ``--print-outcome`` rank 0 says each run's headline."""

    def train(run: PinRun, reason: str, number: int) -> tuple[str, float]:
        base = recipe_args(args, SweepArgs)
        seeded = replace(base, seed=run.seed, train=replace(base.train, seed=run.seed), study=study_name,
                         roles=[ROLE_FINETUNE, ROLE_SCRATCH])
        tags = {TAG_PIN: study_name, TAG_PIN_REASON: reason[:5000]}
        if run.role == ROLE_PRETRAIN:
            name, alias = registered_name(checkpoint_template(args).format(size=run.size))
            pargs = recipe_args(seeded, PretrainArgs, preset=run.size, tokens=run.tokens, register_as="",
                                corpus=parse_law(args.law)[0],
                                train=replace(pretrain_recipe.TRAIN, seed=run.seed, max_time_s=args.pretrain_max_s))
            trained = run_pretrain(pargs, RunExtras(tags=tags))
            if trained.rank == 0 and pargs.print_outcome:
                say(pretrain_recipe.headline(trained, pargs))
            if trained.checkpoint_dir is None:
                raise RuntimeError(f"pretrained run {trained.run_id} saved no checkpoint to register")
            register_checkpoint(trained.checkpoint_dir, name=name, alias=alias, run_id=trained.run_id)
            return str(trained.run_id), float(trained.best_test_loss)
        cell = Cell(run.size, run.tokens, run.role)
        return recipe_trainer(seeded, parent_run_id, say=say)(cell, number, tags)

    return train


def checkpoint_template(args: PinArgs) -> str:
    """``--from-template``, else the demo's checkpoints of the law's source: a mix-to-python loop fine-tuning text
    checkpoints would train another law's runs and never move its own."""
    return args.from_template or demo_checkpoint_template(parse_law(args.law)[0])


def law_fit(args: PinArgs) -> Callable[[], TransferLaw]:
    """The law from every finished run of it in the store (read now, fitted with ``--bootstrap`` draws)."""
    from transfer_laws.registry.fit import fit_transfer_law  # lazy: numpy and scipy (1 s), not for pin --help

    client = client_for(use_tracking_uri(args.tracking_uri))

    def fit() -> TransferLaw:
        return fit_transfer_law(read_law_inputs(args.law, client).points, bootstrap=args.bootstrap)

    return fit


@dataclass(frozen=True)
class PinResult:
    """How ``transfer-laws pin`` ended: the loop's outcome, the target it was judged on, and the final refit."""

    outcome: PinOutcome
    target: Target
    refit: RefitResult

    @property
    def exit_code(self) -> int:
        """0 pinned, 3 budget spent, 4 no candidate run helps."""
        return self.outcome.exit_code

    def lines(self) -> list[str]:
        """What the command prints when the loop ends."""
        refit = self.refit
        return [format_outcome(self.outcome, self.target),
                f"law {refit.law}: {refit.status}" + (f" version {refit.version}" if refit.version else "")]


def run_pin(args: PinArgs, *, say: Say = quiet, deadline: float = math.inf) -> PinResult:
    """Train the advised runs of ``args.law`` until its target holds or the budget is spent, then refit it.

    Each run's outcome (``--print-outcome``) goes to ``say``; how the loop ended is the result's ``lines()``. A bad
    ``--budget`` is ``BadInput``; a law that cannot be fitted yet is a ``UserError`` with exit code 3. ``deadline``
    (``time.monotonic()``): no run starts after it (``demo --full``'s wall clock)."""
    from transfer_laws.registry.fit import FitError  # lazy: numpy and scipy (1 s), not for pin --help

    try:
        budget = replace(parse_budget(args.budget), deadline=deadline)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    template = checkpoint_template(args)
    args = replace(args, from_template=template)
    fit = law_fit(args)
    try:
        fit()
    except FitError as exc:
        raise UserError(f"pin needs a law it can fit to start from; {args.law}: {str(exc).splitlines()[0]} "
                        "(train seed runs first: transfer-laws sweep or transfer-laws demo)", 3) from None
    name = args.study or f"pin-{args.law}"
    queue = open_queue(args, lambda *_: ("", math.nan), note)
    parent = ensure_parent_run(queue.study, args.tracking_uri, args.experiment, create=True)
    queue.train = recipe_train(args, parent, name, say=say)
    target = Target(args.alpha_halfwidth, args.beta_excludes_0)
    client = client_for(args.tracking_uri)  # the wall-time model reads the runs' durations

    split = split_limit(read_law_inputs(args.law, client).split_tokens)  # no run larger than the target's split

    def candidates(law: TransferLaw) -> list[Candidate]:
        return within_corpus(law_candidates(law, checkpoint_template=template, epochs=args.epochs),
                             min(split, queue.token_limit()))

    outcome = pin(fit, candidates, queue, target, budget, draws=args.advice_draws, log=note,
                  wall=lambda law: wall_time(client, law))
    result = refit_law(args.law, tracking_uri=args.tracking_uri, bootstrap=args.bootstrap, plots=args.refit_plots)
    return PinResult(outcome, target, result)
