"""Storage profiles and simulated time: relationships derived from the profile data, never wall clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyswap.firmware_sim.errors import FlashGeometryError, ProfileError
from tinyswap.firmware_sim.flash import KIB, FlashDevice, FlashOp, OpKind
from tinyswap.firmware_sim.storage import (
    EMMC,
    NVME,
    PROFILES,
    SAM_INTERNAL,
    SD_SDIO,
    SD_SPI,
    STM32F4_INTERNAL,
    W25Q128JV,
    SimClock,
    Span,
    elapsed,
    op_seconds,
)

SMALL = {  # a small part of each medium, enough for the tests
    "w25q128jv": 64 * KIB,
    "stm32f4-internal": 512 * KIB,
    "sam-internal": 64 * KIB,
    "sd-spi": 64 * KIB,
    "sd-sdio": 64 * KIB,
    "emmc-hs400": 64 * KIB,
    "nvme": 64 * KIB,
}


@pytest.fixture(params=sorted(PROFILES))
def profile(request):
    return PROFILES[request.param]


def device(profile, clock=None, record_ops=False) -> FlashDevice:
    return FlashDevice(profile.geometry(SMALL[profile.name]), clock=clock, record_ops=record_ops)


def test_every_profile_is_sourced_and_consistent(profile):
    assert profile.sources, f"{profile.name} cites no source"
    g = profile.geometry()
    assert g.size == profile.size and g.page_size == profile.page_size and g.managed == profile.managed
    for size in set(g.sectors):
        assert profile.erase_time(size, worst=True) >= profile.erase_time(size) >= 0


def test_span_rejects_typ_above_max():
    with pytest.raises(ProfileError):
        Span(2.0, 1.0)


def test_datasheet_figures_are_the_ones_in_flash_facts():
    assert W25Q128JV.program_page == Span(0.4e-3, 3e-3)
    assert W25Q128JV.erase_time(4 * KIB) == 45e-3 and W25Q128JV.erase_time(4 * KIB, worst=True) == 0.4
    assert W25Q128JV.erase_time(64 * KIB, worst=True) == 2.0
    assert SD_SPI.program_latency.max == 0.25  # SD write busy <= 250 ms
    assert SAM_INTERNAL.erase_time(8 * KIB, worst=True) == 0.155
    assert EMMC.read_bandwidth == 166e6 and NVME.read_latency.max == pytest.approx(100e-6)


def test_erase_of_two_sectors_costs_twice_one(profile):
    for worst in (False, True):
        one, two = device(profile), device(profile)
        g = one.geometry
        # two equal sectors: on the STM32F4 map use sectors 0 and 1 (16 KB each)
        one.erase(0, g.sectors[0])
        two.erase(0, g.sectors[0] + g.sectors[1])
        t1, t2 = elapsed(one.snapshot(), profile, worst), elapsed(two.snapshot(), profile, worst)
        assert t2 == pytest.approx(2 * t1)
        assert t1 == pytest.approx(profile.erase_time(g.sectors[0], worst))


def test_mixed_sector_erase_is_costed_per_sector_size():
    f = device(STM32F4_INTERNAL)
    f.erase(0, 128 * KIB)  # 4 x 16 KB + 1 x 64 KB
    t = elapsed(f.snapshot(), STM32F4_INTERNAL)
    assert t == pytest.approx(4 * 0.25 + 0.55)
    assert elapsed(f.snapshot(), STM32F4_INTERNAL, worst=True) == pytest.approx(4 * 0.5 + 1.1)


def test_program_cost_counts_pages():
    p = W25Q128JV
    f = device(p)
    f.program(0, b"\x00" * 512)  # two whole pages
    assert elapsed(f.snapshot(), p) == pytest.approx(2 * 0.4e-3 + 512 / p.write_bandwidth)
    g = device(p)
    g.program(255, b"\x00\x00")  # two bytes, but across a page boundary: two page programs
    assert g.snapshot().program_pages == 2
    assert elapsed(g.snapshot(), p, worst=True) == pytest.approx(2 * 3e-3 + 2 / p.write_bandwidth)


def test_read_cost_is_latency_plus_transfer(profile):
    f = device(profile)
    f.read(0, 4096)
    f.read(0, 4096)
    expected = 2 * (profile.read_latency.typ + 4096 / profile.read_bandwidth)
    assert elapsed(f.snapshot(), profile) == pytest.approx(expected)


def test_sd_write_busy_spike_dominates_the_worst_case():
    for p in (SD_SPI, SD_SDIO):
        f = device(p)
        for i in range(4):
            f.program(i * 4096, b"\x00" * 4096)
        typ, worst = elapsed(f.snapshot(), p), elapsed(f.snapshot(), p, worst=True)
        assert worst - typ == pytest.approx(4 * (p.program_latency.max - p.program_latency.typ))
        assert worst > 25 * typ  # 250 ms busy vs a 2 ms typical write


def test_managed_erase_is_a_free_trim():
    f = device(SD_SPI)
    f.erase(0, 8 * KIB)
    assert elapsed(f.snapshot(), SD_SPI, worst=True) == 0.0


def test_worst_is_never_faster(profile):
    f = device(profile)
    f.program(0, b"\x00" * f.geometry.write_align * 8)
    f.read(0, 100)
    f.erase(0, f.geometry.sectors[0])
    assert elapsed(f.snapshot(), profile, worst=True) >= elapsed(f.snapshot(), profile)


def test_counters_from_another_page_size_are_refused():
    f = device(SD_SPI)  # 512 B pages
    f.program(0, b"\x00" * 512)
    with pytest.raises(ProfileError, match="page"):
        elapsed(f.snapshot(), W25Q128JV)


def test_unknown_sector_size_is_refused():
    with pytest.raises(ProfileError, match="no erase time"):
        W25Q128JV.erase_time(8 * KIB)


def test_profile_geometry_prefix_of_mixed_map():
    assert STM32F4_INTERNAL.geometry(512 * KIB).sectors[-1] == 128 * KIB
    with pytest.raises(FlashGeometryError):
        STM32F4_INTERNAL.geometry(100 * KIB)


ops = st.lists(st.tuples(st.sampled_from(["read", "program", "erase"]), st.integers(0, 15), st.integers(1, 4)),
               max_size=30)


@given(ops)
def test_clock_counters_and_oplog_agree(sequence):
    """The three ways to get time (clock, counters, op log) give the same total."""
    for profile in (W25Q128JV, SD_SDIO, STM32F4_INTERNAL):
        clock = SimClock(profile, worst=True, record=True)
        f = device(profile, clock=clock, record_ops=True)
        g = f.geometry
        before = f.snapshot()
        for kind, sector, n in sequence:
            sector %= g.sector_count
            start = g.sector_start(sector)
            if kind == "read":
                f.read(start, n * 100)
            elif kind == "erase":
                f.erase(start, g.sectors[sector])
            else:
                try:
                    f.program(start, b"\x00" * g.write_align * n)
                except Exception:  # unerased: a caller bug, refused before reaching the medium
                    pass
        total = elapsed(f.snapshot() - before, profile, worst=True)
        assert clock.now == pytest.approx(total)
        assert elapsed(f.oplog, profile, worst=True) == pytest.approx(total)
        assert len(clock.events) == len(f.oplog)
        assert all(a[0] + a[1] == pytest.approx(b[0]) for a, b in zip(clock.events, clock.events[1:]))


def test_sim_clock_advance():
    clock = SimClock(W25Q128JV)
    clock.advance(0.5)
    clock.charge(FlashOp(OpKind.ERASE, 0, 4096, erased=(4096,)))
    assert clock.now == pytest.approx(0.5 + 0.045)
    with pytest.raises(ValueError):
        clock.advance(-1)
    assert op_seconds(FlashOp(OpKind.ERASE, 0, 8192, erased=(4096, 4096)), W25Q128JV) == pytest.approx(0.09)
