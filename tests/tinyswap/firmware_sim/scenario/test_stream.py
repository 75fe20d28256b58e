"""The scenario `stream` step on the demo's keyword spotter (`models/streaming/kws_state_io`
with two LoRA slots, two versions of "kws-user"): what report.json and the trace say while
updates, rollbacks and a reboot happen mid-stream, the computed no-mixed-state assertion
failing when the policy code is mutated, and the step's validation.

The expected counts are derived by hand from the policy rules in each test's comments, not by
running the policy code."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tinyswap.commands.demo_stream import ADAPTER, SCENARIO, StreamingBundle, build_kws
from tinyswap.firmware_sim.scenario import ScenarioFormatError, load_scenario, run_scenario, validate_scenario
from tinyswap.swap.streams import StreamSessions

V1, V2 = f"{ADAPTER}@1.0.0", f"{ADAPTER}@2.0.0"


@pytest.fixture(scope="module")
def kws(tmp_path_factory) -> StreamingBundle:
    return build_kws(tmp_path_factory.mktemp("kws"))


def kws_scenario(kws: StreamingBundle, steps: list[dict[str, Any]] | None = None, **device: Any) -> dict[str, Any]:
    sc = copy.deepcopy(load_scenario(SCENARIO))
    assert kws.built.bundle_dir is not None and kws.built.keys is not None
    sc.update(bundle=str(kws.built.bundle_dir), keyring=[str(kws.built.keys.public_key_path)])
    if steps is not None:
        sc["steps"] = steps
    sc["device"].update(device)
    return sc


def run(kws: StreamingBundle, sc: dict[str, Any], out: Path) -> dict[str, Any]:
    return run_scenario(sc, profile="mcu-qspi", out_dir=out, base_dir=SCENARIO.parent, packages=kws.packages,
                        plots=False)


def test_the_keyword_spotters_day_reports_frames_per_version_flushes_pins_and_the_reset(kws, tmp_path) -> None:
    report = run(kws, kws_scenario(kws), tmp_path)
    assert report["completed"]
    streams = report["streams"]
    (mic,) = streams["per_stream"]
    # The day, by the pin rules (max age 40 frames; 8 frames a word):
    # 4 words on v1 (32 frames); update to v2; 8 more frames pinned to v1 (its pin is then 40
    # frames old: released, flushed with 40 frames of context) and 24 frames on v2 under a new
    # pin; rollback to v1: 16 frames pinned to v2 (40 again: flushed) and 16 on v1; reboot: the
    # 16 frames of state are lost; 2 words on v1 from a zero state; closed.
    assert mic["policy"] == "pin" and mic["max_age_frames"] == 40
    assert mic["frames_by_version"] == {V1: 32 + 8 + 16 + 16, V2: 24 + 16} and mic["frames"] == 112
    assert mic["flushes"] == 2 and mic["frames_lost"] == 80 and mic["pinned_frames"] == 8 + 16
    assert mic["pinned_seconds"] > 0 and mic["evictions"] == 0
    assert mic["resets"] == 1 and mic["frames_lost_at_reset"] == 16 and mic["closed"]
    assert mic["checked_frames"] == 112 and mic["mixed_frames"] == 0
    assert streams["no_frame_consumed_state_of_another_adapter_set"] is True
    assert streams["state_bytes"] == 64 and streams["ram_budget_bytes"] == 1024 and streams["peak_ram_bytes"] == 64
    assert sum(a["rows"] for a in mic["accuracy"]) == 14  # every word scored after its last frame
    ram = report["budget"]["ram"]  # the state budget is RAM set aside beside the arena and the cache
    assert ram["stream_state_budget"] == 1024
    assert ram["free_bytes"] == ram["ram_bytes"] - ram["arena_bytes"] - ram["cache_budget"] - 1024
    # per step: the stream step after the update ran both versions
    step3 = report["steps"][3]["result"]
    assert step3["frames"] == {V1: 8, V2: 24} and step3["flushes"] == 1 and step3["pinned_frames"] == 8
    trace = json.loads((tmp_path / "trace.json").read_text())
    names = [e["name"] for e in trace["traceEvents"] if e.get("cat") == "stream"]
    # pins: v1, v2 after the first release, v1 after the second, v1 again after the reboot
    assert names.count("stream pin") == 4 and names.count("stream unpin") == 3  # two releases and the close
    assert names.count("stream flush") == 2 and names.count("stream state lost") == 1
    assert "stream MIXED STATE" not in names


def test_the_reports_assertion_fails_when_a_stream_reuses_state_across_adapter_sets(kws, tmp_path,
                                                                                    monkeypatch) -> None:
    def reuse_any_state(self, stream, key):  # the mutation: continue whatever state the stream had
        return next(iter(stream.segments.values())) if stream.segments else real(self, stream, key)

    real = StreamSessions._segment_for
    monkeypatch.setattr(StreamSessions, "_segment_for", reuse_any_state)
    steps = [{"kind": "update", "package": "kws-user-v1", "permanent": True},
             {"kind": "stream", "stream": "mic", "dataset": "words", "rows": 2, "adapters": ADAPTER, "policy": "flush"},
             {"kind": "update", "package": "kws-user-v2", "permanent": True},
             {"kind": "stream", "stream": "mic", "dataset": "words", "rows": 2}]
    report = run(kws, kws_scenario(kws, steps), tmp_path)
    (mic,) = report["streams"]["per_stream"]
    assert mic["checked_frames"] == 32 and mic["mixed_frames"] == 16  # every frame after the update
    assert report["streams"]["no_frame_consumed_state_of_another_adapter_set"] is False


def test_segment_streams_keep_one_state_per_set_within_the_ram_budget(kws, tmp_path) -> None:
    # Budget: two 64-byte states. "a" (segment) and "b" (flush) each hold one on v1; after the
    # update "a" needs a second state for v2: no room, so its v1 state (16 frames) is evicted;
    # "b" is flushed (16 frames). After the rollback "a" starts v1 again from zero (its v1 state
    # is gone): the v2 state (8 frames) is evicted in turn.
    steps = [{"kind": "update", "package": "kws-user-v1", "permanent": True},
             {"kind": "stream", "stream": "a", "dataset": "words", "rows": 2, "adapters": ADAPTER,
              "policy": "segment"},
             {"kind": "stream", "stream": "b", "dataset": "words", "rows": 2, "adapters": ADAPTER, "policy": "flush"},
             {"kind": "update", "package": "kws-user-v2", "permanent": True},
             {"kind": "stream", "stream": "a", "dataset": "words", "rows": 1},
             {"kind": "stream", "stream": "b", "dataset": "words", "rows": 1},
             {"kind": "rollback", "name": ADAPTER, "permanent": True},
             {"kind": "stream", "stream": "a", "dataset": "words", "rows": 1}]
    report = run(kws, kws_scenario(kws, steps, stream_ram_bytes=128), tmp_path)
    a, b = report["streams"]["per_stream"]
    assert a["frames_by_version"] == {V1: 24, V2: 8} and a["evictions"] == 2 and a["frames_lost"] == 24
    assert a["flushes"] == 0 and a["peak_states"] == 1
    assert b["flushes"] == 1 and b["frames_lost"] == 16 and b["frames_by_version"] == {V1: 16, V2: 8}
    assert report["streams"]["peak_ram_bytes"] == 128
    assert report["streams"]["no_frame_consumed_state_of_another_adapter_set"] is True


def test_a_state_budget_beyond_the_free_ram_is_refused_at_the_first_stream_step(kws, tmp_path) -> None:
    steps = [{"kind": "stream", "stream": "mic", "dataset": "words", "rows": 1, "adapters": "__base__",
              "policy": "flush", "expect_error": "StreamRamError"},
             {"kind": "wait", "seconds": 1}]
    report = run(kws, kws_scenario(kws, steps, stream_ram_bytes=512 * 1024), tmp_path)
    assert report["completed"] and report["steps"][0]["outcome"] == "expected error"
    assert "does not fit" in report["steps"][0]["error"] and report["streams"] is None


def test_a_stream_refused_for_ram_stays_unopened(kws, tmp_path) -> None:
    steps = [{"kind": "stream", "stream": "a", "dataset": "words", "rows": 1, "adapters": "__base__", "policy": "flush"},
             {"kind": "stream", "stream": "b", "dataset": "words", "rows": 1, "adapters": "__base__", "policy": "flush",
              "expect_error": "StreamRamError"},
             {"kind": "stream", "stream": "b", "dataset": "words", "rows": 1, "expect_error": "DeviceStateError"},
             {"kind": "stream", "stream": "a", "dataset": "words", "rows": 1}]
    report = run(kws, kws_scenario(kws, steps, stream_ram_bytes=64), tmp_path)  # room for one state
    assert report["completed"] and [s["outcome"] for s in report["steps"]] == ["ok", "expected error",
                                                                               "expected error", "ok"]
    assert "needs 64 more bytes" in report["steps"][1]["error"] and "no open stream" in report["steps"][2]["error"]
    (a,) = report["streams"]["per_stream"]
    assert a["frames_by_version"] == {"__base__": 16} and report["streams"]["peak_ram_bytes"] == 64


@pytest.mark.parametrize("steps, field, message", [
    ([{"kind": "stream", "stream": "s", "dataset": "words", "rows": 1, "policy": "pin"}], "adapters", "is missing"),
    ([{"kind": "stream", "stream": "s", "dataset": "words", "rows": 1, "adapters": "x"}], "policy", "is missing"),
    ([{"kind": "stream", "stream": "s", "dataset": "words", "rows": 1, "adapters": "x", "policy": "flush"},
      {"kind": "stream", "stream": "s", "dataset": "words", "rows": 1, "policy": "pin"}], "policy", "already open"),
    ([{"kind": "stream", "stream": "s", "dataset": "words", "rows": 1, "adapters": "x", "policy": "flush",
       "close": True},
      {"kind": "stream", "stream": "s", "dataset": "words", "rows": 1}], "stream", "was closed"),
    ([{"kind": "stream", "stream": "s", "dataset": "words", "rows": 1, "adapters": "x", "policy": "flush",
       "max_age_frames": 3}], "max_age_frames", "only for a \"pin\" stream"),
    ([{"kind": "stream", "stream": "s", "dataset": "words", "rows": 0, "adapters": "x", "policy": "flush"}],
     "rows", "an integer >= 1"),
    ([{"kind": "stream", "stream": "s", "dataset": "words", "rows": 1, "adapters": "x", "policy": "sometimes"}],
     "policy", "one of"),
])
def test_stream_steps_are_validated_before_anything_runs(steps, field, message) -> None:
    sc = load_scenario(SCENARIO)
    sc["steps"] = steps
    with pytest.raises(ScenarioFormatError, match=message) as info:
        validate_scenario(sc)
    assert info.value.field == field


@pytest.mark.parametrize("device, message", [
    ({"stream_state": [0]}, "device.stream_state"), ({"stream_state": [0, True]}, "device.stream_state"),
    ({"stream_state": [0, 256]}, "device.stream_state"), ({"stream_ram_bytes": 0}, "device.stream_ram_bytes"),
    ({"stream_ram_bytes": 2**40}, "device.stream_ram_bytes"),
])
def test_the_device_stream_options_are_bounded(device, message) -> None:
    sc = load_scenario(SCENARIO)
    sc["device"] = device
    with pytest.raises(ScenarioFormatError, match=message):
        validate_scenario(sc)


def test_ports_and_frames_that_do_not_fit_the_model_are_refused_before_the_device_is_built(kws, tmp_path) -> None:
    with pytest.raises(ScenarioFormatError, match="the model has 2 data inputs"):
        run(kws, kws_scenario(kws, stream_state=[2, 0]), tmp_path / "a")
    with pytest.raises(ScenarioFormatError, match="not whole frames"):
        run_scenario(kws_scenario(kws), profile="mcu-qspi", out_dir=tmp_path / "b", base_dir=SCENARIO.parent,
                     packages=kws.packages, datasets={"words": {"x": [[1, 2, 3]] * 4}}, plots=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing ran, nothing written


@pytest.fixture(scope="module")
def three_adapters(kws) -> dict[str, bytes]:
    """kws-user v1 plus two more adapters signed with the bundle's key: three names, two slots."""
    from tinyswap.commands.demo_stream import KWS_MODEL, lora_refs, seeded_lora
    from tinyswap.export.pack import pack

    source = KWS_MODEL.read_bytes()
    assert kws.built.keys is not None
    key = kws.built.keys.private_key()
    extra = {name: pack(seeded_lora(source, lora_refs(source), name, 3 + k), kws.built.slotmap, key)[0]
             for k, name in enumerate(("kws-a", "kws-b"))}
    return {**kws.packages, **extra}


def slot_restoring_day(cut: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Both slots taken by kws-user and kws-a; kws-b is stored only, so the stream's first frame
    has the swap manager write it into a slot: the stream step's flash work."""
    steps = [{"kind": "update", "package": "kws-user-v1", "permanent": True},
             {"kind": "update", "package": "kws-a", "permanent": True},
             {"kind": "update", "package": "kws-b", "permanent": True}]
    if cut is not None:
        steps.append({"kind": "power_cut", **cut})
    steps += [{"kind": "stream", "stream": "mic", "dataset": "words", "rows": 2, "adapters": "kws-b",
               "policy": "flush"},
              {"kind": "reboot"},
              {"kind": "stream", "stream": "mic", "dataset": "words", "rows": 3, "close": True}]
    return steps


def restoring_day(kws: StreamingBundle, packages: dict[str, bytes], out: Path,
                  cut: dict[str, Any] | None) -> dict[str, Any]:
    report = run_scenario(kws_scenario(kws, slot_restoring_day(cut)), profile="mcu-qspi", out_dir=out,
                          base_dir=SCENARIO.parent, packages=packages, plots=False)
    assert report["completed"]
    return report


@pytest.fixture(scope="module")
def uninterrupted(kws, three_adapters, tmp_path_factory) -> dict[str, Any]:
    return restoring_day(kws, three_adapters, tmp_path_factory.mktemp("clean"), None)


@pytest.mark.parametrize("cut", [{"when": "before", "op": 1}, {"when": "torn", "op": 12}, {"when": "after", "op": -1}])
def test_a_power_cut_in_a_stream_steps_slot_write_recovers_like_any_slot_write(kws, three_adapters, uninterrupted,
                                                                               tmp_path, cut) -> None:
    writes = uninterrupted["steps"][3]["mutating_ops"]
    assert writes >= 12  # the stream's first frame wrote kws-b into a slot (and committed the record)
    report = restoring_day(kws, three_adapters, tmp_path, dict(cut, op=writes if cut["op"] == -1 else cut["op"]))
    step = report["steps"][4]
    assert step["outcome"] == "power lost" and step["cut"]["fired"]
    (mic,) = report["streams"]["per_stream"]
    assert mic["resets"] == 1 and mic["checked_frames"] == mic["frames"] and mic["mixed_frames"] == 0
    assert report["streams"]["no_frame_consumed_state_of_another_adapter_set"] is True
    assert set(mic["frames_by_version"]) == {"kws-b@4.0.0"}
    # after the reboot the stream runs on a slot the boot left whole (or rewrote): the words
    # after it score as in the uninterrupted day (a word's 8 frames fill the ring buffer)
    assert report["steps"][-1]["result"]["accuracy"] == uninterrupted["steps"][-1]["result"]["accuracy"]
    slots = {s["adapter"] for s in report["final"]["slots"]}
    assert slots <= {"kws-user@1.0.0", "kws-a@3.0.0", "kws-b@4.0.0", None}
