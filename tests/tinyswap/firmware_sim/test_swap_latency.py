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


def test_with_the_idle_step_every_swap_path_only_programs_and_stays_within_the_floor() -> None:
    bundle = example_bundle("cnn")  # alignment 4096: slots sit on their own sectors
    smap = bundle.smap
    v1, v2 = package(smap, 1, "kws", 1), package(smap, 2, "kws", 2)
    other = package(smap, 3, "user", 1)
    results = measure(bundle.data, smap, Keyring([KEY.public_key()]), v1, v2, other)
    assert [r.device for r in results] == ["mcu-qspi", "mcu-qspi", "mcu-ram", "gateway"]
    typical, worst, ram, gateway = results
    nor = PROFILES["w25q128jv"]
    assert all(r.swap_erases == 0 for r in results)  # the idle step took every erase off the path
    for r, erase in ((typical, nor.erase_time(4096)), (worst, nor.erase_time(4096, worst=True))):
        assert r.swap_floor_ms is not None and r.swap_ms <= 1.1 * r.swap_floor_ms
        # Without the idle step the same swap erases the slot's sector and a metadata area (one
        # 4 KB sector each) on its path, and programs the frame's pages the idle step programmed.
        assert r.swap_without_idle_erases == 2
        extra = r.swap_without_idle_ms - r.swap_ms
        assert 2 * erase * 1e3 <= extra < 2 * erase * 1e3 + r.program_floor_ms
        assert r.idle_ms >= 2 * erase * 1e3  # the erases happened, off the request path
    assert worst.swap_ms > typical.swap_ms and worst.swap_floor_ms > typical.swap_floor_ms
    # The model in RAM: no slot erase ever; the metadata area on QSPI NOR was the one erase.
    assert ram.swap_floor_ms is None and ram.swap_without_idle_erases == 1
    assert ram.swap_without_idle_ms - ram.swap_ms >= nor.erase_time(4096) * 1e3
    assert gateway.swap_without_idle_erases == 0  # NVMe: managed, nothing to erase
    assert all(r.per_request_switch_flash_ops == 0 for r in results)  # gates only
    assert typical.rollback_ms < typical.swap_ms  # a gate flip and a commit, no slot write
