"""docs/scenario-format.md cannot drift from the runner: its step reference is what the
registry generates, and it lists every registered kind and field."""

from __future__ import annotations

import re

import pytest

from tinyswap.firmware_sim.scenario import STEP_KINDS, ScenarioFileError
from tinyswap.firmware_sim.scenario.docs import BEGIN, END, generated_block, render_step_reference, replace_block
from tinyswap.firmware_sim.scenario.registry import COMMON
from tinyswap.firmware_sim.scenario.validate import TOP_LEVEL

from tests.conftest import REPO

DOC = REPO / "docs" / "scenario-format.md"


def test_the_committed_reference_is_the_generated_one():
    assert generated_block(DOC.read_text(encoding="utf-8")) == render_step_reference(), \
        "run: python -m tinyswap.firmware_sim.scenario.docs"


def test_the_document_lists_every_kind_and_field():
    text = DOC.read_text(encoding="utf-8")
    for kind in STEP_KINDS:
        section = text.split(f"### `{kind.name}`\n", 1)[1].split("\n### ", 1)[0]
        for p in kind.fields:
            assert re.search(rf"^\| `{p.name}` \|", section, re.M), (kind.name, p.name)
        assert '"kind": "' + kind.name + '"' in section
    for p in COMMON:
        assert f"| `{p.name}` |" in text
    for key in TOP_LEVEL:
        if key not in ("format", "version"):
            assert f"`{key}`" in text, key


def test_replacing_the_block():
    doc = f"intro\n{BEGIN}\nold\n{END}\noutro\n"
    assert replace_block(doc, "new\n") == f"intro\n{BEGIN}\nnew\n{END}\noutro\n"
    with pytest.raises(ScenarioFileError, match="needs one"):
        replace_block("no markers", "new\n")
