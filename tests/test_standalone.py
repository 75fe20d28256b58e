"""The repository stands alone: nothing in it points outside itself.

A user gets this repository and nothing else, so no file may refer to a developer's folders
beside the checkout, to an absolute path on one machine, or to this project's own issue numbers
(meaningless without the tracker). References to other projects' issues name the project
("mcuboot #1966", "peft #176") and stay allowed: a reader can look them up. And every page
under `docs/` that a comment or page cites must exist, with the section or table row it names.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Folders that are made, not written: never part of a checkout.
SKIP_DIRS = {".git", ".venv", "venv", "out", "build", "dist", "__pycache__", ".pytest_cache", ".hypothesis",
             ".mypy_cache", ".ruff_cache", ".tox"}

# The patterns are written so that this file does not match them itself.
FORBIDDEN = [
    ("a developer folder beside the checkout", re.compile(r"\.\./shared\b")),
    ("the developers' notes", re.compile(r"\bshared[/\\]notes\b")),
    # An absolute path of one machine; not a URL path ("github.com/x/home/" has a word before it).
    ("an absolute path of a machine", re.compile(r"(?<![\w.~-])/(?:work|home|Users|root)/")),
    ("an absolute path of a machine", re.compile(r"\b[A-Za-z]:\\{1,2}Users\\")),
    ("an issue number of this project", re.compile(r"\b(?:issue|ticket)s?\s*#?\s*\d+\b", re.IGNORECASE)),
]
# A bare "#12" is a reference to this project's tracker unless a project name comes first
# ("vllm #42125"). Quotes, '=' and ':' before it mean a colour or a value ("#888888").
BARE_NUMBER = re.compile(r"(?<![\w&/\"'#=:-])#(\d+)\b")
PROJECT_NAME = re.compile(r"[A-Za-z][\w.-]*$")
NOT_A_PROJECT = {"see", "in", "of", "for", "from", "per", "and", "or", "the", "a", "at", "by", "to", "on", "as",
                 "with", "after", "before", "also", "cf", "cf.", "fixes", "fixed", "closes", "closed", "resolves",
                 "issue", "issues", "ticket", "bug", "pr", "pull", "request", "task", "item", "step", "number", "no"}

DOC_CITE = re.compile(r"\bdocs/([\w.-]+\.md)")
# A page cited with a section (`, "Section"` or ` ("Section")` after the page's name) or a table
# row (` row "Row"`); the quoted name may continue on the next comment line.
DOC_SECTION = re.compile(r"\bdocs/([\w.-]+\.md)`?(?:[,:]?\s+(?:#\s*)?\(?|\()(row\s+)?\"([^\"]{1,120})\"")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")


def repository_files() -> list[Path]:
    """Tracked files (and new files not yet added but not ignored) in a git checkout; otherwise
    every file outside the made folders."""
    try:
        done = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                              capture_output=True, timeout=60, check=True)
        names = sorted({n for n in done.stdout.decode().split("\0") if n})
        return [REPO / n for n in names if (REPO / n).is_file()]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for root, dirs, names in os.walk(REPO):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
            files.extend(Path(root) / n for n in names)
        return sorted(files)


def text_of(path: Path) -> str | None:
    """The file as text, or None for a binary file (models, arrays, images)."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def offences(text: str) -> list[tuple[int, str, str]]:
    """(line, what, matched text) for every reference outside the repository in `text`."""
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for what, pattern in FORBIDDEN:
            found.extend((lineno, what, m.group(0)) for m in pattern.finditer(line))
        for m in BARE_NUMBER.finditer(line):
            before = line[: m.start()].rstrip()
            name = PROJECT_NAME.search(before)
            if not (name and before.endswith(name.group(0)) and name.group(0).lower() not in NOT_A_PROJECT):
                found.append((lineno, "an issue number of this project", m.group(0)))
    return found


def headings(markdown: str) -> set[str]:
    return {line.lstrip("#").strip() for line in markdown.splitlines() if re.match(r"#{1,6} ", line)}


def table_rows(markdown: str) -> set[str]:
    """The first cell of every table row."""
    return {line.split("|")[1].strip() for line in markdown.splitlines() if line.startswith("|") and
            line.count("|") >= 3}


FILES = repository_files()
TEXTS = {p: t for p in FILES if (t := text_of(p)) is not None}


def test_the_file_list_is_the_repository() -> None:
    rel = {p.relative_to(REPO).as_posix() for p in FILES}
    assert {"README.md", "pyproject.toml", "tinyswap/cli.py", "tests/test_standalone.py"} <= rel
    assert not any(part in SKIP_DIRS for r in rel for part in Path(r).parts[:-1])
    assert len(TEXTS) > 100


def test_no_file_points_outside_the_repository() -> None:
    bad = [f"{p.relative_to(REPO)}:{line}: {what}: {match!r}"
           for p, text in TEXTS.items() for line, what, match in offences(text)]
    assert not bad, "references outside the repository:\n" + "\n".join(bad)


def test_every_cited_doc_exists() -> None:
    missing = sorted({f"{p.relative_to(REPO)}: docs/{name}" for p, text in TEXTS.items()
                      for name in DOC_CITE.findall(text) if not (REPO / "docs" / name).is_file()})
    assert not missing, "cited but not in docs/:\n" + "\n".join(missing)


def test_every_cited_section_and_row_exists() -> None:
    wrong = []
    for p, text in TEXTS.items():
        for name, row, title in DOC_SECTION.findall(text):
            doc = REPO / "docs" / name
            if not doc.is_file():
                continue  # reported by test_every_cited_doc_exists
            title = " ".join(re.sub(r"\n\s*#", " ", title).split())
            markdown = doc.read_text(encoding="utf-8")
            known = table_rows(markdown) if row else headings(markdown)
            if title not in known:
                wrong.append(f"{p.relative_to(REPO)}: docs/{name} has no {'row' if row else 'section'} {title!r}")
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_links_in_the_docs_reach_their_files() -> None:
    pages = [p for p in TEXTS if p.suffix == ".md" and (p.parent == REPO / "docs" or p == REPO / "README.md")]
    assert REPO / "docs" / "architecture.md" in pages
    broken = []
    for page in pages:
        for target in MD_LINK.findall(TEXTS[page]):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a web address or an anchor on the same page
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, "links to missing files:\n" + "\n".join(broken)


# ------------------------------------------------------------------------- the checks can fail

# Built from pieces so that this file does not contain what it forbids.
OFFENDING = [
    "see ../" + "shared/" + "notes/flash-facts.md",
    "facts in shared" + "/notes",
    "model at /" + "work/main/models/x.tflite",
    "cache in /" + "home/dev/.cache",
    "'/" + "Users/dev/tinyswap'",
    "(/" + "root/data)",
    "C:" + "\\Users\\dev",
    "Targets (iss" + "ue 6): each adapter",
    "fixed in iss" + "ue #12",
    "see Iss" + "ue 7 for details",
    "as asked (#" + "7)",
    "#" + "7: bound the cache",
    "closes #" + "12",
    "tick" + "et 3",
]
ALLOWED = [
    "a half-written magic bricked devices, mcuboot #1966",
    "peft #176 documents the hot swap",
    "the old digest can be served for it (vLLM #42125)",
    'edgecolor="#888888", color="#333"',
    "fill:#333; stroke=#000",
    "# 1. Which runtime is the golden reference",
    "https://github.com/littlefs-project/littlefs/issues/123",
    "https://example.org/home/page and github.com/x/root/y",
    "~" + "/wo" + "rk/ and ./home/ are relative",  # split so that repository-wide greps for the machine path stay quiet
    "tissue 5 and reissued 3 times",
    "the #include line, a #define",
]


@pytest.mark.parametrize("text", OFFENDING)
def test_an_outside_reference_is_caught(text: str) -> None:
    assert offences(text), text


@pytest.mark.parametrize("text", ALLOWED)
def test_an_allowed_reference_passes(text: str) -> None:
    assert offences(text) == [], text


def test_a_missing_section_or_row_is_caught() -> None:
    cite = "docs/" + 'guide.md, "Slots" and ' + "docs/" + 'facts.md row "QSPI NOR\n# (Winbond W25Q-JV)"'
    found = DOC_SECTION.findall(cite)
    assert found == [("guide.md", "", "Slots"), ("facts.md", "row ", "QSPI NOR\n# (Winbond W25Q-JV)")]
    assert "Slots" in headings("# Title\n\n## Slots\n") and "Slots" not in headings("Slots are...\n")
    assert "QSPI NOR (Winbond W25Q-JV)" in table_rows("| medium | figure |\n|---|---|\n| QSPI NOR (Winbond W25Q-JV) | x |\n")
    assert DOC_CITE.findall("see " + "docs/" + "nothing-here.md") == ["nothing-here.md"]
