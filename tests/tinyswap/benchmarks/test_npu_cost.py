"""The Ethos-U cost tables: flash write floors and the rows the README shows."""

from __future__ import annotations

import math

import pytest

from tinyswap.firmware_sim.storage import PROFILES


def test_write_seconds_is_erase_plus_page_programs():
    from tinyswap.benchmarks.npu_cost import slot_write_seconds, write_seconds

    nor = PROFILES["w25q128jv"]
    # 10,000 bytes: three 4 KiB sector erases (45 ms each) and 40 page programs (0.4 ms each), plus the bus.
    expected = 3 * 0.045 + math.ceil(10_000 / 256) * 0.4e-3 + 10_000 / nor.write_bandwidth
    assert write_seconds("w25q128jv", 10_000) == pytest.approx(expected)
    assert slot_write_seconds("w25q128jv", 4096) == pytest.approx(0.045 + 16 * 0.4e-3 + 4096 / nor.write_bandwidth)
    # On 8 KiB sectors a 4 KiB slot still erases a whole sector: one erase, eight 512-byte pages.
    sam = PROFILES["sam-internal"]
    one_sector = (sam.erase_time(8192) + sam.program_latency.pick(False) + 8 * sam.program_page.pick(False)
                  + 4096 / sam.write_bandwidth)
    assert slot_write_seconds("sam-internal", 4096) == pytest.approx(one_sector)

def test_rows_render_both_tables():
    pytest.importorskip("ethosu.vela")
    from tinyswap.benchmarks.npu_cost import compute_table, cost_row, update_table
    from tinyswap.export.npu.config import NpuConfig

    from tests.npu_cases import base_only, source

    row = cost_row("digits CNN", source("digits-cnn"), base_only("digits-cnn"), NpuConfig.U55_128)
    # The stitched model's CPU operators are the branches: all slots' A/B and D/U products.
    expected = 0
    for st in source("digits-cnn").slot_tensors:
        if st.role in ("A", "B", "D", "U"):
            t = st.tensor
            out_positions = 64 if len(t.shape) == 4 else 1  # the digits CNN's 8x8 feature maps; dense: one row
            expected += out_positions * int(math.prod(t.shape))
    assert row.branch_macs == expected
    compute, update = compute_table([row]), update_table([row])
    assert compute.count("\n") == 2 and "ethos-u55-128" in compute and f"{row.branch_macs:,}" in compute
    assert f"{len(row.cost.recompiled.output):,}" in update
