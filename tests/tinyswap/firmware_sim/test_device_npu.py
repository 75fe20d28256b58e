"""The swap path on a device whose model is an Ethos-U bundle: an adapter write touches only
the slot's sectors of the model partition, and the Vela bytes read back unchanged."""

from __future__ import annotations

import pytest

pytest.importorskip("ethosu.vela")

from tests.tinyswap.firmware_sim.device_cases import RIGS, packages_of  # noqa: E402

RIG = "qspi+sd-npu"


def test_installing_and_swapping_writes_only_slot_sectors_of_the_model():
    r = RIGS[RIG]
    bundle, pkgs = r.bundle(), packages_of(RIG)
    d = r.device(bundle, 0xFF, 1)
    d.provision()
    d.boot()
    start = len(d.timeline.events)
    d.update(pkgs["A1"], permanent=True)
    d.activate("A", permanent=True)
    d.update(pkgs["B1"], permanent=True)
    model = d.partitions["model"]
    slots = [(model.offset + s["offset"], model.offset + s["offset"] + s["length"]) for s in bundle.smap["slots"]]
    writes = [e for e in d.timeline.events[start:] if e.track == "flash:model" and e.name in ("erase", "program")
              and e.args["offset"] < model.offset + model.size]
    assert writes, "the update wrote no slot"
    for e in writes:
        lo, hi = e.args["offset"], e.args["offset"] + e.args["bytes"]
        assert any(a <= lo and hi <= b for a, b in slots), f"{e.name} [{lo}, {hi}) outside every slot range"
    assert {a for a, _ in slots} <= {e.args["offset"] for e in writes if e.name == "erase"}  # both slots written
    # Every Vela byte (command streams, weight areas) is still what Vela emitted.
    from tests.npu_cases import npu_bundle

    now = d.model_bytes_now()
    for span in npu_bundle("examples-cnn", r.npu, r.alignment).vela_spans():
        assert now[span["offset"] : span["offset"] + span["length"]] == bundle.data[span["offset"] : span["offset"]
                                                                                    + span["length"]]
