"""`load_scenario`: a scenario file that is missing, a directory, a device, too large, binary,
not JSON or not an object gives one typed error in one line, never a raw OSError,
UnicodeDecodeError or RecursionError."""

from __future__ import annotations

import json
import os

import pytest

from tinyswap.firmware_sim.scenario import (
    MAX_SCENARIO_BYTES,
    ScenarioError,
    ScenarioFileError,
    ScenarioFormatError,
    load_scenario,
)

from tests.tinyswap.firmware_sim.scenario.scenario_cases import DAY


def _refused(path, error, text, **kwargs) -> ScenarioError:
    with pytest.raises(error) as err:
        load_scenario(path, **kwargs)
    message = str(err.value)
    assert text in message and "\n" not in message and str(path) in message, message
    return err.value


def test_a_scenario_file_loads():
    data = load_scenario(DAY)
    assert data["name"] == "digits-day" and data == json.loads(DAY.read_text())


def test_missing_directory_and_special_files(tmp_path):
    _refused(tmp_path / "absent.json", ScenarioFileError, "cannot read scenario")
    _refused(tmp_path, ScenarioFileError, "is a directory")
    if os.path.exists("/dev/null"):
        _refused("/dev/null", ScenarioFileError, "not a regular file")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe")  # opening must not block waiting for a writer
        _refused(tmp_path / "pipe", ScenarioFileError, "not a regular file")


def test_the_size_is_bounded_before_reading(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"steps": [{"kind": "confirm", "note": "x" * 100}] * 20}))
    assert load_scenario(path)["steps"][0]["kind"] == "confirm"
    _refused(path, ScenarioFileError, "over the 1000-byte limit for a scenario", max_bytes=1000)
    with open(tmp_path / "huge.json", "wb") as f:
        f.truncate(MAX_SCENARIO_BYTES + 1)  # sparse: the size alone must refuse it
    _refused(tmp_path / "huge.json", ScenarioFileError, f"{MAX_SCENARIO_BYTES + 1} bytes")


@pytest.mark.parametrize("content, text", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "is not UTF-8 text (byte 0 is 0x89)"),
    (b"{\"steps\": [\xff]}", "is not UTF-8 text (byte 11 is 0xff)"),
    (b"", "is not valid JSON"),
    (b"steps:\n  - kind: install\n", "is not valid JSON"),
    (b"{\"steps\": [}", "is not valid JSON"),
    (b"{\"at\": NaN}", "NaN is not a JSON number"),
    (b"{\"at\": -Infinity}", "is not a JSON number"),
    (b"[" * 100_000 + b"]" * 100_000, "is not valid JSON"),
    (b"[{\"kind\": \"install\"}]", "the top level must be a JSON object"),
    (b"\"steps\"", "the top level must be a JSON object"),
    (b"{\"name\": \"a\", \"name\": \"b\"}", "the key 'name' appears twice"),
    (b"{\"steps\": [{\"kind\": \"wait\", \"seconds\": 1, \"seconds\": 2}]}", "the key 'seconds' appears twice"),
])
def test_content_that_is_not_a_json_object_is_a_format_error(tmp_path, content, text):
    path = tmp_path / "scenario.json"
    path.write_bytes(content)
    _refused(path, ScenarioFormatError, text)
