"""Installing the plugin must not slow down ``import mlflow``: the entry points MLflow loads stay import-light.

MLflow imports every ``mlflow.run_context_provider`` entry point while ``import mlflow`` runs, and the ``mlflow.app``
entry point when a server starts; each is checked in a fresh interpreter, so modules cached by other tests do not
hide a heavy import.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

HEAVY = ("numpy", "scipy", "torch", "lightning", "matplotlib", "pandas", "transfer_laws.registry.fit",
         "transfer_laws.registry.fit.advice", "transfer_laws.lightning_modules")


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _ours(group: str) -> list[str]:
    return [ep.value for ep in entry_points(group=group) if ep.value.startswith("transfer_laws.")]


@pytest.mark.parametrize("group", ["mlflow.run_context_provider", "mlflow.app"])
def test_entry_points_load_nothing_heavy(group: str) -> None:
    targets = _ours(group)
    assert targets, f"no transfer-laws entry point in {group}: is the package installed?"
    loads = "\n".join(
        f"import importlib; m = importlib.import_module({value.split(':')[0]!r}); getattr(m, {value.split(':')[1]!r})"
        for value in targets
    )
    loaded = _loaded_after(loads)
    heavy = sorted(m for m in loaded for h in HEAVY if m == h or m.startswith(h + "."))
    assert not heavy, f"loading the {group} entry point imported {heavy}"


def test_run_context_provider_answers_without_loading_the_fitter() -> None:
    # in_context() and tags() run on every run start: they must not pull the fitter in either.
    loaded = _loaded_after(
        "from transfer_laws.plugin.run_context import TransferRunContextProvider as P\n"
        "p = P(); p.in_context(); p.tags()"
    )
    assert not {m for m in loaded if m.startswith("transfer_laws.registry.fit")}


def test_registry_names_still_resolve_on_first_use() -> None:
    import transfer_laws.registry as registry

    assert callable(registry.fit_transfer_law)
    assert registry.TransferLaw.__name__ == "TransferLaw"
    with pytest.raises(AttributeError):
        registry.no_such_name  # noqa: B018 - the attribute access is the test
