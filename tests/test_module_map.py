"""docs/architecture.md's module map names every module of bgjobs, and only
modules that exist (as sqlite-utils checks that every command is documented).

A row names one file (`bgjobs/store.py`) or a folder (`bgjobs/ui/`), which
covers every module under it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bgjobs"
DOC = ROOT / "docs" / "architecture.md"


def map_entries(text: str) -> list[str]:
    """The paths in the first column of the table under "## Module map"."""
    section = re.search(r"^## Module map\n(.*?)(?=^##)", text, re.M | re.S)
    assert section, f"{DOC.name} has no '## Module map' section"
    return re.findall(r"^\| `([^`]+)` \|", section.group(1), re.M)


def modules() -> list[str]:
    """Every module file of the package, as a path from the repository root."""
    return sorted(p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py"))


def covered(module: str, entries: list[str]) -> bool:
    return any(module == e or (e.endswith("/") and module.startswith(e)) for e in entries)


ENTRIES = map_entries(DOC.read_text())


@pytest.mark.parametrize("module", modules())
def test_every_module_is_in_the_module_map(module):
    assert covered(module, ENTRIES), (
        f"{module} is not in the module map of docs/architecture.md; add a row that says its one concept"
    )


@pytest.mark.parametrize("entry", ENTRIES)
def test_every_module_map_entry_exists(entry):
    path = ROOT / entry
    exists = path.is_dir() if entry.endswith("/") else path.is_file()
    assert exists, f"docs/architecture.md's module map names {entry}, which does not exist; remove its row"
    assert entry.startswith("bgjobs/") and (entry.endswith("/") or entry.endswith(".py")), entry


def test_each_module_has_one_row():
    assert len(ENTRIES) == len(set(ENTRIES)), sorted(e for e in ENTRIES if ENTRIES.count(e) > 1)


def test_the_map_reader_reads_rows_and_folders():
    # The checks themselves: a negative control.
    text = "# A\n\n## Module map\n\n| module | concept |\n| --- | --- |\n| `bgjobs/a.py` | a |\n| `bgjobs/ui/` | pages |\n\n## Next\n| `bgjobs/b.py` | not in the map |\n"
    entries = map_entries(text)
    assert entries == ["bgjobs/a.py", "bgjobs/ui/"]
    assert covered("bgjobs/ui/pages/logs.py", entries) and covered("bgjobs/a.py", entries)
    assert not covered("bgjobs/b.py", entries) and not covered("bgjobs/uix.py", entries)
