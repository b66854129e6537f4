"""A package's public names, each loaded on first use (PEP 562): one table, name -> the module that defines it,
gives the package its ``__getattr__`` and ``__dir__``.

Standard library only: ``plugin/recipes`` and ``plugin/sweeps`` import it when they are imported, and a command's
``--help`` builds its flags from those packages without loading torch, Lightning, Optuna or MLflow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_names(namespace: dict[str, Any],
               homes: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for the module whose globals are ``namespace``: a name in ``homes`` imports its
    module on first use and is then a plain attribute of the package; a name that is its module's last part (a
    submodule) is that module. Use as ``__getattr__, __dir__ = lazy_names(globals(), _HOMES)``."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> object:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = import_module(home)
        value = module if home.endswith("." + name) else getattr(module, name)
        namespace[name] = value  # the next lookup is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *homes})

    return __getattr__, __dir__
