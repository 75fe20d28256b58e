"""Swap latency per storage configuration beside the floor the medium imposes."""

from __future__ import annotations

import math

import pytest

from tinyswap.firmware_sim.storage import PROFILES
from tinyswap.firmware_sim.swap_latency import measure, swap_floor_seconds
from tinyswap.package import Keyring

from tests.adapter_cases import KEY, example_bundle, package


def test_floor_is_one_erase_per_sector_plus_page_programs() -> None:
    nor = PROFILES["w25q128jv"]
    length = 4096
    pages = math.ceil(length / nor.page_size)
    by_hand = (nor.erase_time(4096) + nor.program_latency.typ + pages * nor.program_page.typ
               + length / nor.write_bandwidth)
    assert swap_floor_seconds(0, length, "w25q128jv", [4096]) == pytest.approx(by_hand)
    assert swap_floor_seconds(0, 2 * length, "w25q128jv", [4096, 4096]) > 2 * nor.erase_time(4096)


def test_every_configuration_measures_a_swap_above_its_floor_and_free_per_request_switches() -> None:
    bundle = example_bundle("cnn")  # alignment 4096: slots sit on their own sectors
    smap = bundle.smap
    v1, v2 = package(smap, 1, "kws", 1), package(smap, 2, "kws", 2)
    other = package(smap, 3, "user", 1)
    results = measure(bundle.data, smap, Keyring([KEY.public_key()]), v1, v2, other)
    assert [r.device for r in results] == ["mcu-qspi", "mcu-qspi", "mcu-ram", "gateway"]
    typical, worst, ram, gateway = results
    assert typical.swap_floor_ms is not None and typical.swap_ms >= typical.swap_floor_ms
    assert worst.swap_ms > typical.swap_ms and worst.swap_floor_ms > typical.swap_floor_ms
    assert ram.swap_floor_ms is None and gateway.swap_ms < typical.swap_ms
    assert all(r.per_request_switch_flash_ops == 0 for r in results)  # gates only
    assert typical.rollback_ms < typical.swap_ms  # a gate flip and a commit, no slot write
