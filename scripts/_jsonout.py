"""JSON for machines: one strict document (no NaN or Infinity, which JSON does not have; null instead)."""

from __future__ import annotations

import json
import math
from typing import Any, TypeAlias

JsonDict: TypeAlias = dict[str, Any]
"""A JSON object as the commands build it: its values are any JSON value."""


def plain(value: object) -> object:
    """``value`` with numpy scalars, tuples and non-finite floats made JSON's own (NaN and inf become None)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_document(value: object) -> str:
    """One strict JSON document, indented for people, parseable by any JSON reader."""
    return json.dumps(plain(value), indent=2, allow_nan=False, default=str)
