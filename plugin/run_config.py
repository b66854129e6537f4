"""A run's resolved settings: the config groups as one nested dict, its params and its YAML artifact.

The launcher hands the callback every settings object it trained with (model shape, optimiser, training loop, data)
after all defaults and overrides are resolved; the callback logs each scalar as a param ``<group>.<field>`` (e.g.
``optim.lr``, ``train.max_steps``, ``data.batch_size``) and the whole config as ``config.yaml``
(``schema.CONFIG_ARTIFACT``), so a run's page shows what it really ran with and the YAML can be read back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TypeAlias, TypeVar

import yaml

Plain: TypeAlias = "None | bool | int | float | str | list[Plain] | dict[str, Plain]"
"""YAML/JSON-ready data: what ``plain`` makes of a setting."""
V = TypeVar("V")

PARAM_VALUE_LIMIT = 6000
"""MLflow's longest param value; longer values stay in the YAML only."""


def plain(value: object) -> Plain:
    """``value`` as YAML/JSON-ready data: dataclasses and mappings to dicts, paths to strings, tuples to lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def resolved_config(**groups: object) -> dict[str, Plain]:
    """The run's config: one entry per group (a dataclass, a mapping or a scalar), in plain data."""
    return {name: plain(value) for name, value in groups.items()}


def config_params(config: Mapping[str, Plain]) -> dict[str, str]:
    """Params ``<group>.<field>`` for every scalar setting of every group; paths stay out (they name one machine's
    folders)."""
    params: dict[str, str] = {}

    def visit(prefix: str, value: Plain) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                visit(f"{prefix}.{key}" if prefix else str(key), item)
            return
        if _is_path_setting(prefix, value):
            return
        text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
        if len(text) <= PARAM_VALUE_LIMIT:
            params[prefix] = text

    for group, values in config.items():
        if isinstance(values, Mapping):  # top-level scalars (the role) are tags already
            visit(str(group), values)
    return params


def config_yaml(config: Mapping[str, Plain]) -> str:
    """The config as YAML, groups in the launcher's order."""
    return yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False)


def chunks(values: dict[str, V], size: int = 100) -> list[dict[str, V]]:
    """``values`` in dicts of at most ``size`` items (MLflow takes at most 100 params per request)."""
    items = list(values.items())
    return [dict(items[i:i + size]) for i in range(0, len(items), size)] or [{}]


def _is_path_setting(name: str, value: Plain) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return isinstance(value, str) and (leaf.endswith(("_dir", "_path")) or value.startswith("/"))


def exact_count(value: int) -> str:
    """A count written exactly and short: 2500 -> ``2500``, 20000 -> ``20k``, 3000000 -> ``3M``."""
    value = int(value)
    for divisor, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if value and value % divisor == 0:
            return f"{value // divisor}{suffix}"
    return str(value)
