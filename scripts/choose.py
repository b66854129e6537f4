"""``transfer-laws choose``: which registered checkpoint to fine-tune from, for a target, a model size and D_F.

Every law ``<source>-to-<target>`` predicts the best loss and the effective data multiplier (D_F + D_T) / D_F at
(N, D_F), with 95% intervals; the sources are ranked, each names the checkpoint of that size to use
(``models:/pretrained-mix@champion``), says whether it is distinguishable from the next and flags extrapolation.
A law whose draws do not pin it down is never ranked above one that is. ``--unit chars`` asks in characters (the
paper's unit; needed when the sources' tokenizers differ). Exit codes: 0 answered, 2 invalid arguments or a
target without laws, 3 no law of the target has a fit to rank by.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from transfer_laws.lightning_modules.config import positive
from transfer_laws.registry.schema import law_name
from transfer_laws.registry.tracking import client_for, use_tracking_uri
from transfer_laws.registry.transfer_map import read_target, target_map, targets
from transfer_laws.scripts._errors import BadInput, UserError
from transfer_laws.scripts._jsonout import json_document
from transfer_laws.scripts._map_text import format_map, format_ranking

EXIT_NOTHING_TO_RANK = 3
"""The target has laws, but none has a readable fit yet."""


@dataclass(kw_only=True)
class Args:
    """Arguments of ``transfer-laws choose``."""

    target: str = "python"
    """The target corpus: every law <source>-to-<target> is ranked."""
    n: float = positive()
    """Non-embedding parameters N of the model to fine-tune."""
    d_f: float = positive()
    """Fine-tuning data D_F you have, in --unit."""
    unit: Literal["tokens", "chars"] = "tokens"
    """Unit of --d-f: tokens of the laws' tokenizer, or characters (the paper's unit)."""
    json: bool = False
    """Print the whole map and ranking as one JSON document."""
    tracking_uri: str | None = None
    """MLflow tracking URI; default: MLFLOW_TRACKING_URI, else the embedded SQLite store under TRANSFER_LAWS_HOME."""


def load_map(target: str, n: float | None, d_f: float | None, unit: str, tracking_uri: str | None) -> dict:
    """The target's map from the active store; a target without laws is bad input naming the targets there are."""


    try:
        law_name("x", target)
    except ValueError as exc:
        raise BadInput(f"--target: {exc}") from None
    uri = use_tracking_uri(tracking_uri)
    client = client_for(uri)
    laws = read_target(client, target)
    if not laws:
        known = targets(client)
        raise BadInput(f"no law of target {target!r} in this store; "
                       + (f"targets with laws: {', '.join(known)}" if known else "this store has no law yet"))
    return target_map(laws, n, d_f, unit)


def run(args: Args) -> int:
    doc = load_map(args.target, args.n, args.d_f, args.unit, args.tracking_uri)
    if not doc.get("ranking"):
        why = "; ".join(f"{law['law']}: {law.get('error')}" for law in doc["laws"]) or "; ".join(doc["notes"])
        raise UserError(f"no law of target {args.target!r} has a fit to rank by ({why})", EXIT_NOTHING_TO_RANK)
    if args.json:
        print(json_document(doc))
        return 0
    print("\n".join(format_map(doc) + format_ranking(doc)))
    return 0
