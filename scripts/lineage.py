"""``transfer-laws lineage``: the runs that started from a checkpoint version, or where a run came from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(kw_only=True)
class Args:
    """Arguments of ``transfer-laws lineage``."""

    target: str
    """models:/name/version (list the runs fine-tuned from it) or a run id (walk back to its pretraining data)."""
    tracking_uri: str | None = None
    """MLflow tracking URI; default: MLFLOW_TRACKING_URI, else the embedded SQLite store under TRANSFER_LAWS_HOME."""


def run(args: Args) -> int:
    from transfer_laws.registry.lineage import lineage_of_run, lineage_of_version
    from transfer_laws.registry.tracking import use_tracking_uri

    uri = use_tracking_uri(args.tracking_uri)
    if args.target.startswith("models:/"):
        runs = lineage_of_version(args.target, tracking_uri=uri)
        print(f"{len(runs)} run(s) started from {args.target}:")
        for r in sorted(runs, key=lambda r: (r.d_f_tokens or 0)):
            loss = "n/a" if r.best_test_loss is None else f"{r.best_test_loss:.4f}"
            print(f"  {r.run_id}  D_F={r.d_f_tokens}  best_test_loss={loss}  {r.status}")
        return 0
    lineage = lineage_of_run(args.target, tracking_uri=uri)
    print(f"run {lineage.run_id}")
    print(f"  started from: {lineage.parent_uri or '(nothing: pretraining or scratch run)'}")
    if lineage.pretrain_run_id:
        print(f"  pretraining run: {lineage.pretrain_run_id}")
        for data in lineage.pretrain_inputs:
            print(f"    data: {data.name} ({data.context}) digest {data.digest}")
    return 0
