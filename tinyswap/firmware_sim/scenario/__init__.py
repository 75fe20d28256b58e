"""Scenarios: a day in the life of a simulated device, from a JSON file, with a report, a trace
and plots. `tinyswap sim SCENARIO --profile NAME --out DIR` runs one; `run_scenario` is the
same runner for other code (the demo passes packages and datasets in memory).

The format is documented for users in docs/scenario-format.md, whose step tables are
generated from the step-kind registry (`python -m tinyswap.firmware_sim.scenario.docs`).

Modules: `fields` (value types and bounds of step fields), `registry` (the `StepKind` record,
`@step_kind`, typed `Step` records), `kinds` and `infer` (one registration per step kind:
fields, checks, handler, progress text), `validate` (the whole scenario, before anything
runs), `files` (the scenario file and what it names), `runner` (dispatch and recording),
`report` (report.json and the outputs), `docs` (the generated reference).
"""

from __future__ import annotations

from tinyswap.firmware_sim.scenario.errors import (
    ScenarioError,
    ScenarioFileError,
    ScenarioFormatError,
    ScenarioStepFailed,
    StepKindRegistryError,
)
from tinyswap.firmware_sim.scenario.fields import BASE, parse_duration
from tinyswap.firmware_sim.scenario.files import MAX_SCENARIO_BYTES, Dataset, load_scenario
from tinyswap.firmware_sim.scenario.registry import STEP_KINDS, Step, StepKind, StepParams, step_kind, step_kinds
from tinyswap.firmware_sim.scenario.report import REPORT_FORMAT, write_outputs
from tinyswap.firmware_sim.scenario.runner import run_scenario
from tinyswap.firmware_sim.scenario.validate import FORMAT, VERSION, validate_scenario

step_kinds()  # the built-in kinds register themselves on import

__all__ = ["BASE", "Dataset", "FORMAT", "MAX_SCENARIO_BYTES", "REPORT_FORMAT", "STEP_KINDS", "ScenarioError",
           "ScenarioFileError", "ScenarioFormatError", "ScenarioStepFailed", "Step", "StepKind",
           "StepKindRegistryError", "StepParams", "VERSION", "load_scenario", "parse_duration", "run_scenario",
           "step_kind", "step_kinds", "validate_scenario", "write_outputs"]
