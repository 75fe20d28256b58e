"""The step reference of docs/scenario-format.md, generated from the step-kind registry so the
document cannot drift from the runner: every kind with its summary, a table of its fields
(type, bounds, default, meaning) and its example.

    python -m tinyswap.firmware_sim.scenario.docs [docs/scenario-format.md]

rewrites the generated block of the document in place (between the BEGIN / END markers);
a test fails when the committed block differs from what the registry gives.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterable

from tinyswap.firmware_sim.scenario.errors import ScenarioFileError
from tinyswap.firmware_sim.scenario.fields import Param
from tinyswap.firmware_sim.scenario.registry import COMMON, Registry, step_kinds

BEGIN = "<!-- BEGIN GENERATED step reference: python -m tinyswap.firmware_sim.scenario.docs -->"
END = "<!-- END GENERATED step reference -->"
DEFAULT_DOC = Path("docs") / "scenario-format.md"


def _table(params: Iterable[Param]) -> list[str]:
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for p in params:
        text = p.doc.replace("|", "\\|")
        rows.append(f"| `{p.name}` | {p.type_text()} | {p.default_text()} | {text} |")
    return rows


def render_step_reference(registry: Registry | None = None) -> str:
    """The generated block (without the markers)."""
    registry = registry or step_kinds()
    lines = ["### Fields of every step", "",
             "Besides `kind` (one of " + ", ".join(f"`{n}`" for n in registry.names()) + "):", "",
             *_table(COMMON), ""]
    for kind in sorted(registry, key=lambda k: k.name):
        lines += [f"### `{kind.name}`", "", " ".join(kind.summary.split()), ""]
        lines += _table(kind.fields) if kind.fields else ["No fields of its own."]
        lines += ["", "```json", json.dumps(dict(kind.example)), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def replace_block(document: str, block: str) -> str:
    """The document with its generated block replaced by `block`."""
    if document.count(BEGIN) != 1 or document.count(END) != 1 or document.index(BEGIN) > document.index(END):
        raise ScenarioFileError(f"the document needs one {BEGIN!r} line before one {END!r} line")
    head, rest = document.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{block}{END}{tail}"


def generated_block(document: str) -> str:
    """The block between the markers, as committed."""
    return document.split(BEGIN, 1)[1].split(END, 1)[0].lstrip("\n")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEFAULT_DOC
    text = path.read_text(encoding="utf-8")
    new = replace_block(text, render_step_reference())
    if new != text:
        path.write_text(new, encoding="utf-8")
        print(f"updated the step reference in {path}")
    else:
        print(f"{path} is up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
