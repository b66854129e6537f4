"""``transfer-laws pin``: train the runs next-run advice chooses until the law is determined, or the budget is spent.

The loop is ``registry/pin.py``, its workers ``plugin.sweeps.pin``; this prints what they say as they train and how
the loop ended.

Exit codes: 0 pinned, 3 budget spent (what is missing and the predicted cost to finish are printed), 4 no candidate
run helps, 2 bad input, 1 failed.
"""

from __future__ import annotations

from functools import partial

from transfer_laws.plugin.sweeps import PinArgs as Args
from transfer_laws.plugin.sweeps import run_pin

__all__ = ["Args", "run"]


def run(args: Args) -> int:
    result = run_pin(args, say=partial(print, flush=True))
    print("\n".join(result.lines()))
    return result.exit_code
