"""The spec notes stay true: their examples run, and their clause ids match the code's.

``spec-notes/*.md`` states, one ``## [ID] title`` heading per clause, the rules the code cites
as ``[ID]`` in comments and docstrings. Every fenced ``pycon`` block of a note is a doctest;
the blocks of one file run in order in one namespace.
"""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
NOTES = ROOT / "spec-notes"
SRC = ROOT / "src"
TESTS = ROOT / "tests"

CLAUSE = re.compile(r"\[[A-Z]+-[0-9]+\]")
HEADING = re.compile(r"^## (\[[A-Z]+-[0-9]+\]) \S", re.MULTILINE)
PYCON = re.compile(r"^```pycon[ \t]*\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

NOTE_FILES = sorted(NOTES.glob("*.md"))
#: The notes that hold examples: every note but README.md (checked by test_notes_have_examples).
EXAMPLE_FILES = [p for p in NOTE_FILES if PYCON.search(p.read_text(encoding="utf-8"))]


def pycon_test(path: Path) -> doctest.DocTest:
    """All ``pycon`` blocks of ``path`` as one doctest, line numbers those of the file."""
    text = path.read_text(encoding="utf-8")
    parser = doctest.DocTestParser()
    examples: list[doctest.Example] = []
    for block in PYCON.finditer(text):
        first_line = text.count("\n", 0, block.start("body"))  # 0-based line of the body
        for example in parser.get_examples(block["body"], name=path.name):
            example.lineno += first_line
            examples.append(example)
    return doctest.DocTest(examples, globs={}, name=path.name, filename=str(path), lineno=0, docstring=text)


def cited_ids(paths: list[Path]) -> dict[str, list[str]]:
    """Every ``[ID]`` in ``paths``, with the files (relative to the root) that cite it."""
    found: dict[str, list[str]] = {}
    for path in paths:
        for clause in sorted(set(CLAUSE.findall(path.read_text(encoding="utf-8")))):
            found.setdefault(clause, []).append(str(path.relative_to(ROOT)))
    return found


def heading_ids() -> dict[str, list[str]]:
    """Every ``## [ID]`` heading of the notes, with the note files that hold it."""
    found: dict[str, list[str]] = {}
    for path in NOTE_FILES:
        for clause in HEADING.findall(path.read_text(encoding="utf-8")):
            found.setdefault(clause, []).append(path.name)
    return found


def source_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_notes_exist() -> None:
    assert NOTES.is_dir(), f"{NOTES} is missing"
    assert (NOTES / "README.md").is_file(), "spec-notes/README.md explains the scheme"
    assert any(HEADING.search(p.read_text(encoding="utf-8")) for p in NOTE_FILES)


def test_notes_have_examples() -> None:
    without = [p.name for p in NOTE_FILES if p.name != "README.md" and p not in EXAMPLE_FILES]
    assert not without, f"spec notes without a pycon example: {without}"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=[p.name for p in EXAMPLE_FILES])
def test_examples_run(path: Path) -> None:
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=OPTIONS, verbose=False)
    result = runner.run(pycon_test(path), out=report.append, clear_globs=True)
    assert result.attempted >= 1, f"{path.name}: its pycon blocks hold no >>> example"
    assert result.failed == 0, f"{path.name}: {result.failed} example(s) failed\n" + "".join(report)


def test_every_cited_clause_has_a_note() -> None:
    cited = cited_ids(source_files())
    headings = heading_ids()
    missing = {clause: files for clause, files in sorted(cited.items()) if clause not in headings}
    assert not missing, f"clauses cited in src/ without a '## [ID]' heading in spec-notes/: {missing}"


def test_every_note_is_cited() -> None:
    this = Path(__file__).resolve()
    code = [p for p in (*source_files(), *sorted(TESTS.rglob("*.py"))) if p.resolve() != this]
    cited = cited_ids(code)
    orphans = {clause: files for clause, files in sorted(heading_ids().items()) if clause not in cited}
    assert not orphans, f"spec-notes/ headings cited nowhere in src/ or tests/: {orphans}"


def test_clause_ids_are_unique() -> None:
    twice = {clause: files for clause, files in heading_ids().items() if len(files) > 1}
    assert not twice, f"clause ids with more than one heading: {twice}"
