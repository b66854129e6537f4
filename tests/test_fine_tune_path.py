"""docs/architecture.md names exactly the files a fine-tune runs through, and says how many.

The path is measured, not read: a `transfer-laws finetune` runs in this process under a profiler, and a file of ours is
on the path when its code is on the call stack at a moment our code calls into MLflow, torch or Lightning, or enters
the fitter (`fit_transfer_law`). Import-time work is left out: a module body is not the path. The path ends at the
registered law version: what the refit does after it (the target's transfer map, `refit.update_target_map`) is
measured too and listed apart. Writes one fine-tune and one law version to the shared demo store.
"""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path
from types import FrameType

import pytest

from transfer_laws.scripts import cli

ROOT = Path(__file__).resolve().parents[1]
ROOMS = tuple(str(ROOT / room) + "/" for room in ("plugin", "registry", "lightning_modules", "scripts"))
LIBRARIES = ("/mlflow/", "/torch/", "/lightning/")
FIT_ENTRY = (str(ROOT / "registry" / "fit" / "_fit.py"), "fit_transfer_law")
AFTER_THE_VERSION = (str(ROOT / "registry" / "refit.py"), "update_target_map")
DOC = ROOT / "docs" / "architecture.md"
SECTION = "## The path of a fine-tune"
AFTER_MARK = "After the version is registered"
"""The doc's paragraph that names what runs after the version (the files quoted after it are that stage's)."""


class PathProbe:
    """Collects our files on the stack whenever our code crosses into a library or the fitter: ``files`` up to the
    registered version, ``after`` for crossings made inside ``AFTER_THE_VERSION``."""

    def __init__(self, rooms: tuple[str, ...] = ROOMS) -> None:
        self.rooms = rooms
        self.files: set[str] = set()
        self.after: set[str] = set()

    def __call__(self, frame: FrameType, event: str, arg: object) -> None:
        if event != "call" or frame.f_code.co_name == "<module>":
            return
        caller = frame.f_back
        if caller is None or not caller.f_code.co_filename.startswith(self.rooms):
            return
        callee = frame.f_code.co_filename
        if not (any(lib in callee for lib in LIBRARIES) or (callee, frame.f_code.co_name) == FIT_ENTRY):
            return
        ours: list[str] = [callee] if callee.startswith(self.rooms) else []
        after = False
        f: FrameType | None = caller
        while f is not None:
            if f.f_code.co_name == "<module>" and f.f_code.co_filename.startswith(self.rooms):
                return  # an import of ours doing work at import time
            if f.f_code.co_filename.startswith(self.rooms):
                ours.append(f.f_code.co_filename)
                after = after or (f.f_code.co_filename, f.f_code.co_name) == AFTER_THE_VERSION
            f = f.f_back
        (self.after if after else self.files).update(Path(name).relative_to(ROOT).as_posix() for name in ours)


def _quoted_files(text: str) -> set[str]:
    return set(re.findall(r"`((?:plugin|registry|lightning_modules|scripts)/[\w/]+\.py)`", text))


def documented_path() -> tuple[set[str], set[str], int | None]:
    """The files of ours the doc's path section quotes by their path (up to the version; after it), and the count it
    states ("runs through N files")."""
    text = DOC.read_text()
    section = text[text.index(SECTION):]
    section = section[:section.find("\n## ", len(SECTION))] if "\n## " in section[len(SECTION):] else section
    path, _, after = section.partition(AFTER_MARK)
    stated = re.search(r"runs through (\d+) files", path)
    return _quoted_files(path), _quoted_files(after), int(stated.group(1)) if stated else None


@pytest.mark.slow
def test_the_doc_names_exactly_the_files_a_fine_tune_runs_through(demo_store, monkeypatch, capsys):
    monkeypatch.setenv("TRANSFER_LAWS_HOME", str(demo_store.home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", demo_store.uri)
    probe = PathProbe()
    sys.setprofile(probe)
    threading.setprofile(probe)
    try:
        code = cli.main(["finetune", "--from", "models:/pretrained-text@champion", "--d-f-tokens", "600"])
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]  # None turns it off, as sys.setprofile
    assert code == 0, capsys.readouterr()
    assert "registered version" in capsys.readouterr().out  # the path reached a law version

    documented, documented_after, stated = documented_path()
    assert not probe.files - documented, f"on the path, not in docs/architecture.md: {sorted(probe.files - documented)}"
    assert not documented - probe.files, f"in the doc's path, not on it: {sorted(documented - probe.files)}"
    assert stated == len(probe.files), f"the doc says {stated} files; the path runs through {len(probe.files)}"
    after = probe.after - probe.files  # a file on the path is counted there
    assert after == documented_after, f"after the version: measured {sorted(after)}, the doc names " \
                                      f"{sorted(documented_after)}"


def test_the_probe_sees_a_crossing_and_ignores_imports(tmp_path, monkeypatch):
    """The probe can fail: a call from a file of ours into torch is recorded; the same call at import time is not."""
    import torch

    rooms = (str(Path(__file__).parent) + "/",)
    probe = PathProbe(rooms)
    sys.setprofile(probe)
    try:
        torch.nn.Identity()(torch.zeros(1))
    finally:
        sys.setprofile(None)
    assert probe.files == {"tests/test_fine_tune_path.py"}

    module = tmp_path / "imports_torch_work.py"
    module.write_text("import torch\ntorch.nn.Identity()(torch.zeros(1))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    at_import = PathProbe((str(tmp_path) + "/",))
    sys.setprofile(at_import)
    try:
        __import__("imports_torch_work")
    finally:
        sys.setprofile(None)
    assert at_import.files == set()
