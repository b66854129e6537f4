"""Typed command-line arguments from dataclasses (litgpt style, on plain argparse).

Each field becomes a flag (``d_f_tokens`` -> ``--d-f-tokens``; a nested dataclass field ``train`` -> a group of
``--train.max-steps`` ...), its type comes from the annotation and its help from the attribute docstring under the
field. ``--config file.yaml`` supplies values with the same nesting; flags given on the command line win. Unknown
YAML keys are errors, so a stale config fails loudly (a test validates every shipped YAML against the code).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import textwrap
import types
import typing
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar, Union, get_args, get_origin

import yaml

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_Args = TypeVar("_Args", bound="DataclassInstance")

Value = object
"""A setting's value as read from YAML or parsed from a flag (whatever type its field declares)."""
TypeForm = object
"""A field's annotation as ``typing.get_type_hints`` gives it: a class, ``int | None``, ``Literal[...]``..."""


class ConfigError(ValueError):
    """A config file or value that does not match the code: bad input, so the command line exits 2."""

    exit_code = 2


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass: ``{field: first paragraph of the string below it}``."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        tree = ast.parse(source).body[0]
        if not isinstance(tree, ast.ClassDef):  # a dataclass's source is its class statement
            continue
        body = tree.body
        for node, following in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _unwrap_optional(tp: TypeForm) -> tuple[TypeForm, bool]:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _number(text: str, kind: type) -> int | float:
    """Parse ``1e6`` as well as ``1000000``; an int field refuses a fraction; nan and inf are never an answer."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    if kind is int:
        if not value.is_integer():
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
        return int(value)
    return value


def _count_or_name(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


def _converter(tp: TypeForm) -> tuple[typing.Callable[[str], Value], str, list[str] | None]:
    """A string parser for type ``tp``, a metavar and the allowed choices."""
    tp, optional = _unwrap_optional(tp)
    origin = get_origin(tp)
    if origin in (Union, types.UnionType) and set(get_args(tp)) - {type(None)} == {int, str}:
        # e.g. Lightning's devices: a count or a name such as "auto"
        return _count_or_name, "INT|TEXT", None
    if origin is Literal:
        choices = [str(c) for c in get_args(tp)]
        return str, "{" + ",".join(choices) + "}", choices
    if origin in (list, tuple):
        (inner,) = get_args(tp)[:1]
        parse_one, _, _ = _converter(inner)
        def parse_list(s: str) -> list[Value]:
            return [parse_one(x) for x in s.split(",") if x]

        return parse_list, "A,B,...", None
    if tp is bool:
        def parse_bool(s: str) -> bool:
            lowered = s.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise argparse.ArgumentTypeError(f"{s!r} is not a boolean")

        return parse_bool, "BOOL", None
    if tp in (int, float):
        def parse_number(s: str) -> int | float:
            return _number(s, tp)

        return parse_number, tp.__name__.upper(), None
    if tp is Path:
        return Path, "PATH", None
    if tp is str or tp is typing.Any:
        return str, "TEXT", None
    raise TypeError(f"unsupported argument type {tp!r}")


def _flag(prefix: str, f: dataclasses.Field) -> str:
    """``--prefix.field-name``; a field may choose its flag (``metadata={"flag": "from"}`` for a keyword)."""
    return "--" + prefix + f.metadata.get("flag", f.name).replace("_", "-")


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    """Add one flag per field of ``cls`` (recursively for nested dataclasses)."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    group = parser if not prefix else parser.add_argument_group(prefix.rstrip("."), cls.__doc__ or None)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            add_dataclass_arguments(parser, tp, prefix=f"{prefix}{f.name}.")
            continue
        parse, metavar, choices = _converter(tp)
        default = _default_of(f)
        help_text = docs.get(f.name, "")
        if default is not dataclasses.MISSING:
            help_text += f" (default: {default})"
        help_text = help_text.replace("%", "%%")  # argparse formats help with %
        dest = (prefix + f.name).replace(".", "__")
        base, _ = _unwrap_optional(tp)
        if f.metadata.get("positional"):  # ``lineage TARGET`` as the docs write it; ``--target`` works too
            group.add_argument(dest, nargs="?", type=parse, default=argparse.SUPPRESS, metavar=f.name.upper(),
                               help=help_text)
        if base is bool:
            # A bare --flag means true; --flag false is also accepted.
            group.add_argument(_flag(prefix, f), dest=dest, type=parse, nargs="?", const=True,
                               default=argparse.SUPPRESS, metavar=metavar, help=help_text)
        else:
            group.add_argument(_flag(prefix, f), dest=dest, type=parse, choices=choices,
                               default=argparse.SUPPRESS, metavar=metavar, help=help_text)


def _default_of(f: dataclasses.Field) -> Value:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _coerce(value: Value, tp: TypeForm, where: str) -> Value:
    """A YAML value as type ``tp`` (YAML gives ints for 1000000 and strings for 1e6)."""
    base, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: null is not allowed")
    if isinstance(base, type) and dataclasses.is_dataclass(base):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {base.__name__} fields")
        return build_dataclass(base, value, where=where)
    if isinstance(value, str) or base in (int, float, Path, bool):
        parse, _, choices = _converter(tp)
        text = value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
        try:
            result = parse(text)
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if choices and result not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {choices}")
        return result
    if get_origin(base) is Literal:
        if value not in get_args(base):
            raise ConfigError(f"{where}: {value!r} is not one of {list(get_args(base))}")
        return value
    if get_origin(base) in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list")
        (inner,) = get_args(base)[:1]
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if get_origin(base) is tuple else items
    return value


def build_dataclass(cls: type[_Args], values: dict[str, Value], where: str = "") -> _Args:
    """An instance of ``cls`` from a (nested) mapping; unknown keys and bad values raise ConfigError."""
    hints = typing.get_type_hints(cls)
    aliases = {f.metadata["flag"].replace("-", "_"): f.name for f in dataclasses.fields(cls) if "flag" in f.metadata}
    values = {aliases.get(k, k): v for k, v in values.items()}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where + '.' if where else ''}{k}") for k, v in values.items()}
    prefix = f"{where}." if where else ""
    missing = [f for f in dataclasses.fields(cls) if f.name not in kwargs and _default_of(f) is dataclasses.MISSING]
    if missing:
        flags = ", ".join(_flag(prefix, f) for f in missing)
        raise ConfigError(f"missing required argument{'s' if len(missing) > 1 else ''} {flags}")
    for f in dataclasses.fields(cls):
        if f.name in kwargs and "minimum" in f.metadata:
            _check_range(_flag(prefix, f), kwargs[f.name], typing.cast(Limits, f.metadata))
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # a __post_init__ check (e.g. TrainConfig) is bad input too
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None


class Limits(typing.TypedDict):
    """What ``at_least`` and ``positive`` (``lightning_modules/config.py``) put in a field's metadata."""

    minimum: float
    strict: bool
    maximum: float | None


def _check_range(flag: str, value: Value, limits: Limits) -> None:
    minimum, strict, maximum = limits["minimum"], limits["strict"], limits["maximum"]
    for item in value if isinstance(value, (list, tuple)) else [value]:
        if item is None or isinstance(item, bool) or not isinstance(item, (int, float)):
            continue
        if not math.isfinite(item) or (item <= minimum if strict else item < minimum):
            bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
            raise ConfigError(f"{flag} must be a finite number {bound}, got {item:g}")
        if maximum is not None and item > maximum:
            raise ConfigError(f"{flag} must be at most {maximum:g}, got {item:g}")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line message (the context, a caret drawing) as one line: the problem and where."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"{problem}{where}"


def load_config(path: Path) -> dict[str, Value]:
    """A YAML file as a mapping (``--config``)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {_yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of argument names")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _set_nested(target: dict[str, Value], dotted: str, value: Value) -> None:
    *parents, leaf = dotted.split("__")
    for p in parents:
        child = target.setdefault(p, {})
        if not isinstance(child, dict):  # a flag and a group of the same name: argparse's dests never collide
            raise ConfigError(f"--{dotted.replace('__', '.')}: {p} is not a group of settings")
        target = child
    target[leaf] = value


def _normalise(values: dict[str, Value]) -> dict[str, Value]:
    return {k.replace("-", "_"): (_normalise(v) if isinstance(v, dict) else v) for k, v in values.items()}


def _merge(base: dict[str, Value], override: dict[str, Value]) -> dict[str, Value]:
    merged = dict(base)
    for k, v in override.items():
        old = merged.get(k)
        merged[k] = _merge(old, v) if isinstance(v, dict) and isinstance(old, dict) else v
    return merged


def parse_namespace(cls: type[_Args], namespace: argparse.Namespace, config: Path | None = None) -> _Args:
    """The dataclass for one subcommand: config file values, then command-line flags."""
    values = _normalise(load_config(config)) if config else {}
    flags: dict[str, Value] = {}
    for dest, value in vars(namespace).items():
        if dest.startswith("_") or dest in ("config", "command", "verbose"):
            continue
        _set_nested(flags, dest, value)
    return build_dataclass(cls, _merge(values, flags))
