"""``sweep --adaptive``: the grid's cells trained one at a time, each enqueued and run as a trial of the study, in
the order ``registry/next_runs.py`` chooses (``adaptive_order``), starting from the law's runs already in the store
when they share this sweep's tokenizer. Each run says why it was chosen (``transfer.adaptive_reason``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transfer_laws.lightning_modules.tokenizer import tokenizer_digest
from transfer_laws.plugin.recipes import megabytes, workspace
from transfer_laws.plugin.sweeps.args import SweepArgs
from transfer_laws.plugin.sweeps.say import Say, note, quiet
from transfer_laws.plugin.sweeps.study import (
    ATTR_RUN_ID,
    Cell,
    TrainCell,
    enqueue_cells,
    finished_trial,
    run_worker,
    trial_loss,
)
from transfer_laws.registry.checkpoints import load_checkpoint_uri
from transfer_laws.registry.next_runs import adaptive_order, candidates_for, preset_n
from transfer_laws.registry.reader import read_law_inputs
from transfer_laws.registry.records import RunResult
from transfer_laws.registry.schema import ROLE_FINETUNE, ROLE_SCRATCH, TAG_ADAPTIVE_REASON, TAG_TOKENIZER
from transfer_laws.registry.tracking import client_for, use_tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from optuna import Study

    from transfer_laws.registry.fit import TransferLaw

ATTR_REASON = "adaptive_reason"
NOT_CHOSEN = "a trial already waiting in the study, not chosen by this loop"
"""On a run of ``sweep --adaptive``: why the loop chose it (seed, no law yet, or the advice's rank and shrink)."""


def run_adaptive(args: SweepArgs, study: Study, cells: list[Cell], train_cell: TrainCell, *, say: Say = quiet) -> int:
    """``sweep --adaptive``: each chosen cell is enqueued and run as a trial of the study (one MLflow run).

    The law's finished runs already in the store (same tokenizer as this sweep's) count as prior points, so a law
    that can already be fitted skips the seed phase. Cells finished by an earlier, stopped ``--adaptive`` run of
    the same study are kept (never retrained) and count against ``--max-runs``; the loop resumes from them. Each
    run's ``transfer.adaptive_reason`` tag (and its trial's user attribute) says why it was chosen. How the loop
    ended goes to ``say``.
    """
    from transfer_laws.registry.fit import fit_transfer_law  # lazy: numpy and scipy (1 s), not for sweep --help

    client = client_for(use_tracking_uri(args.tracking_uri))
    sizes = {c.size: preset_n(c.size) for c in cells}
    prior = prior_results(args, cells, client)
    finished = {c: finished_trial(study, c) for c in cells}
    earlier = [RunResult(str(t.user_attrs[ATTR_RUN_ID]), c.role, sizes[c.size], c.d_f_tokens, trial_loss(t))
               for c, t in sorted(((c, t) for c, t in finished.items() if t is not None), key=lambda ct: ct[1].number)]
    todo = [c for c, t in finished.items() if t is None]
    reasons: dict[Cell, str] = {}

    def train(cell: Cell) -> RunResult:
        enqueue_cells(study, [cell])
        outcome: dict[str, tuple[str, float]] = {}

        def record(c: Cell, number: int, tags: dict[str, str] | None = None) -> tuple[str, float]:
            # The reason travels in the run's facts, so the run carries it from its start.
            outcome["run"] = train_cell(c, number, {**(tags or {}),
                                                      TAG_ADAPTIVE_REASON: reasons.get(c, NOT_CHOSEN)[:5000]})
            return outcome["run"]

        run_worker(study, record, max_trials=1, progress=True,
                   trial_attrs=lambda c: {ATTR_REASON: reasons.get(c, NOT_CHOSEN)[:5000]})
        run_id, loss = outcome.get("run", (f"failed-{cell}", float("nan")))
        return RunResult(run_id, cell.role, sizes[cell.size], cell.d_f_tokens, loss)

    def fit(results: list[RunResult]) -> TransferLaw:
        ours = earlier + results
        ids = {r.run_id for r in ours}
        return fit_transfer_law([p for p in prior if p.run_id not in ids] + ours, bootstrap=200)

    try:
        fit([])
        start = 0  # the store's runs (or this study's earlier ones) already give a law: the advice ranks from here
    except ValueError:
        start = sum(c.role == ROLE_SCRATCH for c in todo) + min(4, len(todo))
    budget = max(0, args.max_runs - len(earlier))
    results = adaptive_order(fit, todo, candidates_for(todo, args.epochs), train, start=start,
                             tolerance=args.alpha_tolerance, max_runs=budget,
                             log=note,
                             on_choice=lambda cell, reason: reasons.__setitem__(cell, reason))
    total = len(earlier) + len(results)
    why = "budget spent" if total >= args.max_runs else (
        "grid exhausted" if total == len(cells) else "alpha within tolerance")
    say(f"sweep {args.study} --adaptive: {len(results)} runs now, {len(earlier)} kept from before ({why}; "
        f"{len(prior)} prior runs of {args.law} in the store)")
    return 0


def prior_results(args: SweepArgs, cells: list[Cell], client: MlflowClient) -> list[RunResult]:
    """The law's finished runs in the store, when they share this sweep's tokenizer (else their losses are in
    other units and none is used)."""
    inputs = read_law_inputs(args.law, client)
    if not inputs.points:
        return []
    theirs = client.get_run(inputs.points[0].run_id).data.tags.get(TAG_TOKENIZER)
    ours = sweep_tokenizer_digest(args, cells)
    if theirs != ours:
        note(f"adaptive: the {len(inputs.points)} runs of {args.law} in the store use another tokenizer; "
             "starting from none of them")
        return []
    return inputs.points


def sweep_tokenizer_digest(args: SweepArgs, cells: list[Cell]) -> str:
    """The digest of the tokenizer this sweep's runs use: the checkpoints' when it fine-tunes, else the workspace's."""
    finetunes = [c for c in cells if c.role == ROLE_FINETUNE]
    if finetunes:
        return str(load_checkpoint_uri(args.from_template.format(size=finetunes[0].size)).tokenizer_digest)
    return tokenizer_digest(workspace.tokenizer_dir(args.tokenizer_corpus, args.vocab_size,
                                                    megabytes(args.tokenizer_max_mb)))
