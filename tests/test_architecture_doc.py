"""docs/architecture.md stays true: every file, folder, function, class and schema name it quotes exists."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("plugin", "registry", "lightning_modules", "scripts")
DOC = ROOT / "docs" / "architecture.md"


def _quoted(text: str) -> set[str]:
    return set(re.findall(r"`([^`\n]+)`", text))


def _sources() -> dict[Path, str]:
    return {p: p.read_text() for room in ROOMS for p in (ROOT / room).rglob("*.py")}


def _is_path(token: str) -> bool:
    return " " not in token and not token.startswith(("models:", "/", "@", "[")) and (
        token.endswith((".py", ".md", ".toml", ".yaml", "/")) or "/" in token)


def _is_code_name(token: str) -> bool:
    """snake_case or CamelCase names (``refit_law``, ``RunResult``, ``GPTConfig.non_embedding_params``)."""
    name = token.removesuffix("(args)").removesuffix("()")
    if _is_path(token) or (ROOT / name).is_dir():
        return False
    return bool(re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)?", name)) and ("_" in name or name != name.lower())


def test_every_quoted_path_exists():
    files = [p.relative_to(ROOT).as_posix() for room in ROOMS for p in (ROOT / room).rglob("*")]
    schema = (ROOT / "registry" / "schema.py").read_text()  # artifact names such as config.yaml
    missing = []
    for token in sorted(t for t in _quoted(DOC.read_text()) if _is_path(t)):
        path = token.split()[0].rstrip("/")
        known = (ROOT / path).exists() or f'"{path}"' in schema
        if not known and not any(f.endswith("/" + path) for f in files):
            missing.append(token)
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"


def test_every_quoted_code_name_is_defined():
    sources = _sources()
    schema = (ROOT / "registry" / "schema.py").read_text()
    code = "\n".join(sources.values())
    missing = []
    for token in sorted(t for t in _quoted(DOC.read_text()) if _is_code_name(t)):
        for name in token.removesuffix("(args)").removesuffix("()").split("."):
            defined = re.search(rf"^\s*(def|class)\s+{name}\b|^\s*{name}\s*[:=]", code, re.M)
            if not defined and f'"{name}"' not in schema:
                missing.append(token)
    assert not missing, f"docs/architecture.md names code that does not exist: {missing}"


def test_the_check_sees_a_missing_name(tmp_path, monkeypatch):
    """The doc check can fail: a made-up function and file are reported."""
    doc = tmp_path / "architecture.md"
    doc.write_text("`registry/no_such_module.py` calls `no_such_function`.")
    monkeypatch.setattr(sys.modules[__name__], "DOC", doc)
    for check in (test_every_quoted_path_exists, test_every_quoted_code_name_is_defined):
        try:
            check()
        except AssertionError as exc:
            assert "no_such" in str(exc)
        else:
            raise AssertionError(f"{check.__name__} passed on a doc naming nothing that exists")
