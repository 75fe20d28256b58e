"""The flash simulator: every rule as an error, the bad-block modes, counters and faults.

Flash tests run over a named table of geometries (littlefs emubd style) crossed with both
erase values and several write alignments (MCUboot's sim matrix).
"""

from __future__ import annotations

import itertools
from typing import Callable

import pytest

from tinyswap.errors import TinySwapError
from tinyswap.firmware_sim.errors import (
    AlignmentError,
    BadBlockEraseError,
    BadBlockProgramError,
    BadBlockReadError,
    FlashError,
    FlashGeometryError,
    FlashMisuseError,
    InjectedWriteError,
    OutOfRangeError,
    PowerLoss,
    UnerasedWriteError,
    WornOutError,
)
from tinyswap.firmware_sim.flash import (
    KIB,
    BadBlock,
    CutPoint,
    FailRange,
    FaultPlan,
    FlashDevice,
    FlashGeometry,
    OpKind,
    Partition,
    PowerCut,
    torn_keep,
)

# name -> factory(erase_value, write_align)
GEOMETRIES: dict[str, Callable[[int, int], FlashGeometry]] = {
    # QSPI NOR: uniform 4 KB sectors, 256 B pages
    "nor-4k": lambda ev, a: FlashGeometry.uniform(4 * KIB, 16, erase_value=ev, write_align=a, name="nor-4k"),
    # STM32F4-style mixed map, 512 KB: 4 x 16 KB, 64 KB, 3 x 128 KB
    "stm32f4": lambda ev, a: FlashGeometry.stm32f4(512 * KIB, erase_value=ev, write_align=a),
    # small sectors with a wide write unit (EEPROM-emulation / ECC-word style)
    "small-sector": lambda ev, a: FlashGeometry.uniform(512, 32, erase_value=ev, write_align=a, page_size=64,
                                                        name="small-sector"),
}
ERASE_VALUES = (0xFF, 0x00)
WRITE_ALIGNS = (1, 4, 32)
MATRIX = list(itertools.product(GEOMETRIES, ERASE_VALUES, WRITE_ALIGNS))


@pytest.fixture(params=MATRIX, ids=[f"{g}-ev{ev:02x}-a{a}" for g, ev, a in MATRIX])
def geom(request) -> FlashGeometry:
    name, ev, align = request.param
    return GEOMETRIES[name](ev, align)


def pattern(n: int, seed: int = 1) -> bytes:
    """Bytes that never equal either erase value, so a landed byte is always visible."""
    return bytes(1 + (seed * 31 + i * 7) % 254 for i in range(n))


def unit(g: FlashGeometry, k: int = 1) -> int:
    return g.write_align * k


# ----------------------------------------------------------------------------- geometry

def test_geometry_tables():
    g = FlashGeometry.stm32f4(1024 * KIB)
    assert g.sectors == (16 * KIB,) * 4 + (64 * KIB,) + (128 * KIB,) * 7
    assert g.size == 1024 * KIB
    assert [g.sector_start(i) for i in range(6)] == [0, 16 * KIB, 32 * KIB, 48 * KIB, 64 * KIB, 128 * KIB]
    assert g.sector_index(64 * KIB - 1) == 3 and g.sector_index(64 * KIB) == 4 and g.sector_index(128 * KIB) == 5
    assert list(g.sectors_in(60 * KIB, 8 * KIB)) == [3, 4]
    assert g.uniform_sector_size is None
    assert FlashGeometry.uniform(4096, 3).uniform_sector_size == 4096


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(sectors=(4096,), erase_value=0x12), "erase_value"),
    (dict(sectors=(4096,), write_align=3), "power of two"),
    (dict(sectors=(4096,), write_align=64), "1..32"),
    (dict(sectors=(4096, 100)), "sector 1"),
    (dict(sectors=()), "at least one"),
    (dict(sectors=(4096,), erase_cycles=0), "erase_cycles"),
    (dict(sectors=(4096,), managed=True, erase_cycles=10), "managed"),
    (dict(sectors=(4096,), page_size=6, write_align=4), "page_size"),
])
def test_geometry_rejects(kwargs, fragment):
    with pytest.raises(FlashGeometryError, match=fragment):
        FlashGeometry(**kwargs)


def test_stm32f4_size_must_fit_the_map():
    with pytest.raises(FlashGeometryError):
        FlashGeometry.stm32f4(100 * KIB)


# ----------------------------------------------------------------------------- the rules

def test_fresh_device_reads_erase_value(geom):
    f = FlashDevice(geom)
    assert f.read(0, 64) == bytes([geom.erase_value]) * 64
    assert f.read(geom.size - 3, 3) == bytes([geom.erase_value]) * 3


def test_program_read_roundtrip_and_unerased_write(geom):
    f = FlashDevice(geom)
    data = pattern(unit(geom, 3))
    f.program(unit(geom, 2), data)
    assert f.read(unit(geom, 2), len(data)) == data
    assert f.read(0, unit(geom, 2)) == bytes([geom.erase_value]) * unit(geom, 2)
    # any unit programmed since its last erase refuses a second program, even if only part
    # of the new write overlaps it
    with pytest.raises(UnerasedWriteError, match=hex(unit(geom, 4))):
        f.program(unit(geom, 4), pattern(unit(geom, 2)))
    # strict: writing the erase value itself also counts as programmed (MCUboot write_safe)
    f.program(unit(geom, 10), bytes([geom.erase_value]) * unit(geom))
    with pytest.raises(UnerasedWriteError):
        f.program(unit(geom, 10), pattern(unit(geom)))
    # the neighbours are still erased and programmable
    f.program(unit(geom, 5), pattern(unit(geom)))
    f.erase(0, geom.sectors[0])
    f.program(unit(geom, 2), data)  # erased again: allowed
    assert f.read(unit(geom, 2), len(data)) == data


def test_program_alignment(geom):
    f = FlashDevice(geom)
    blank = bytes([geom.erase_value])
    with pytest.raises(AlignmentError, match="empty"):
        f.program(0, b"")
    if geom.write_align == 1:
        f.program(3, b"\x01\x02\x03")  # NOR: any byte, any length
        assert f.read(0, 8) == blank * 3 + b"\x01\x02\x03" + blank * 2
        c = f.snapshot()
        assert (c.program_ops, c.program_bytes) == (1, 3)
    else:
        with pytest.raises(AlignmentError, match="aligned"):
            f.program(1, pattern(geom.write_align))
        with pytest.raises(AlignmentError, match="aligned"):
            f.program(0, pattern(geom.write_align - 1))
        with pytest.raises(AlignmentError):
            f.program(geom.write_align, pattern(geom.write_align + 1))
        assert f.image_bytes(0, 2 * geom.write_align) == blank * 2 * geom.write_align
        assert f.snapshot().program_ops == 0
        # the refused programs marked nothing as programmed: the same units take aligned writes
        f.program(0, pattern(2 * geom.write_align))
        assert f.read(0, 2 * geom.write_align) == pattern(2 * geom.write_align)


def test_misuse_and_faults_are_separate_error_families():
    """A rule violation is a driver bug, never a fault: no `except FlashError` can catch it."""
    for misuse in (AlignmentError, OutOfRangeError, UnerasedWriteError, FlashGeometryError):
        assert issubclass(misuse, FlashMisuseError) and issubclass(misuse, TinySwapError)
        assert not issubclass(misuse, FlashError)
    for fault in (PowerLoss, WornOutError, BadBlockProgramError, BadBlockEraseError, BadBlockReadError,
                  InjectedWriteError):
        assert issubclass(fault, FlashError) and not issubclass(fault, FlashMisuseError)


def test_erase_alignment_and_spans(geom):
    f = FlashDevice(geom)
    s0, s1 = geom.sectors[0], geom.sectors[1]
    with pytest.raises(AlignmentError):
        f.erase(0, s0 - 1)
    with pytest.raises(AlignmentError):
        f.erase(geom.write_align, s0)
    with pytest.raises(AlignmentError):
        f.erase(0, s0 + 1)
    with pytest.raises(AlignmentError, match="empty"):
        f.erase(0, 0)
    # program the first unit of sectors 0, 1, 2; erase 0 and 1 in one call
    for s in range(3):
        f.program(geom.sector_start(s), pattern(unit(geom), s + 1))
    f.erase(0, s0 + s1)
    assert f.read(0, unit(geom)) == bytes([geom.erase_value]) * unit(geom)
    assert f.read(s0, unit(geom)) == bytes([geom.erase_value]) * unit(geom)
    assert f.read(geom.sector_start(2), unit(geom)) == pattern(unit(geom), 3)
    snap = f.snapshot()
    assert snap.erase_ops == 1 and snap.erase_bytes == s0 + s1
    assert snap.sector_erases[:3] == (1, 1, 0)


@pytest.mark.parametrize("call", [
    lambda f: f.read(f.size - 1, 2),
    lambda f: f.read(-1, 1),
    lambda f: f.program(f.size, b"\x00" * f.geometry.write_align),
    lambda f: f.program(f.size - f.geometry.write_align, b"\x00" * 2 * f.geometry.write_align),
    lambda f: f.erase(f.size, f.geometry.sectors[-1]),
    lambda f: f.view(f.size - 4, 8),
])
def test_out_of_range(geom, call):
    f = FlashDevice(geom)
    with pytest.raises(OutOfRangeError):
        call(f)
    assert f.snapshot().ops == 0


def test_view_is_live_and_read_only(geom):
    f = FlashDevice(geom)
    v = f.view(0, unit(geom, 2))
    data = pattern(unit(geom, 2))
    f.program(0, data)
    assert bytes(v) == data  # a zero-copy reader sees the new bytes
    f.erase(0, geom.sectors[0])
    assert bytes(v) == bytes([geom.erase_value]) * len(data)
    with pytest.raises(TypeError):
        v[0] = 1  # type: ignore[index]
    assert f.snapshot().view_ops == 1 and f.snapshot().read_ops == 0


def test_initial_image_state():
    g = FlashGeometry.uniform(4096, 2, write_align=4)
    image = bytearray([0xFF]) * g.size
    image[8:12] = b"\x01\x02\x03\x04"
    f = FlashDevice(g, image=image)
    f.program(0, b"abcd")  # erased in the image: allowed
    with pytest.raises(UnerasedWriteError):
        f.program(8, b"wxyz")  # holds data in the image: programmed
    with pytest.raises(FlashGeometryError):
        FlashDevice(g, image=b"\xff" * 10)


# ----------------------------------------------------------------------------- counters

def run_sequence(f: FlashDevice) -> None:
    g = f.geometry
    f.program(0, pattern(g.page_size + g.write_align))  # crosses one page boundary
    f.read(0, 100)
    f.read(5, 1)
    f.erase(0, g.sectors[0])
    f.program(g.sector_start(1), pattern(g.write_align))


def test_counters_exact(geom):
    f = FlashDevice(geom, record_ops=True)
    run_sequence(f)
    c = f.snapshot()
    assert (c.read_ops, c.read_bytes) == (2, 101)
    assert (c.program_ops, c.program_bytes) == (2, geom.page_size + 2 * geom.write_align)
    assert c.program_pages == 3  # two pages for the first program, one for the second
    assert (c.erase_ops, c.erase_bytes) == (1, geom.sectors[0])
    assert c.sector_programs[:2] == (1, 1) and sum(c.sector_programs) == 2
    assert c.sector_erases[0] == 1 and sum(c.sector_erases) == 1
    assert c.ops == 5 and c.mutating_ops == 3
    assert [op.kind for op in f.oplog] == [OpKind.PROGRAM, OpKind.READ, OpKind.READ, OpKind.ERASE, OpKind.PROGRAM]


def test_snapshots_compare_by_value(geom):
    a, b = FlashDevice(geom), FlashDevice(geom)
    run_sequence(a)
    run_sequence(b)
    assert a.snapshot() == b.snapshot()
    before = b.snapshot()
    b.read(0, 1)
    assert b.snapshot() != a.snapshot()
    delta = b.snapshot() - before
    assert (delta.read_ops, delta.read_bytes, delta.program_ops) == (1, 1, 0)
    assert sum(delta.sector_erases) == 0
    b.reset_counters()
    assert b.snapshot().ops == 0


# ----------------------------------------------------------------------------- power loss

def mutate(f: FlashDevice, n: int) -> None:
    """n programs of one write unit each, into consecutive units of sector 0."""
    for i in range(n):
        f.program(unit(f.geometry, i), pattern(unit(f.geometry), i + 1))


@pytest.mark.parametrize("n", [1, 3])
def test_cut_before_op_n(geom, n):
    f = FlashDevice(geom)
    f.arm(FaultPlan.cut(n, CutPoint.BEFORE))
    with pytest.raises(PowerLoss, match=f"before mutating op {n}"):
        mutate(f, 5)
    assert not f.powered
    for call in (lambda: f.read(0, 1), lambda: f.view(0, 1), lambda: f.program(unit(geom, 9), pattern(unit(geom))),
                 lambda: f.erase(0, geom.sectors[0])):
        with pytest.raises(PowerLoss, match="power is off"):
            call()
    f.power_on()
    for i in range(5):
        expected = pattern(unit(geom), i + 1) if i < n - 1 else bytes([geom.erase_value]) * unit(geom)
        assert f.read(unit(geom, i), unit(geom)) == expected
    assert f.snapshot().program_ops == n - 1


@pytest.mark.parametrize("n", [1, 3])
def test_cut_after_op_n(geom, n):
    f = FlashDevice(geom)
    f.arm(FaultPlan.cut(n, CutPoint.AFTER))
    with pytest.raises(PowerLoss, match=f"after mutating op {n}"):
        mutate(f, 5)
    f.power_on()
    for i in range(5):
        expected = pattern(unit(geom), i + 1) if i < n else bytes([geom.erase_value]) * unit(geom)
        assert f.read(unit(geom, i), unit(geom)) == expected
    assert f.snapshot().program_ops == n


def test_cut_counts_from_arming_and_erases_count():
    g = FlashGeometry.uniform(4096, 4)
    f = FlashDevice(g)
    mutate(f, 3)  # before arming: not counted
    f.arm(FaultPlan.cut(2, CutPoint.BEFORE))
    f.erase(0, 4096)  # op 1
    with pytest.raises(PowerLoss):
        f.erase(4096, 4096)  # op 2
    assert f.mutations == 2


def test_torn_write_leaves_a_partial_unit(geom):
    f = FlashDevice(geom)
    data = pattern(unit(geom, 4))
    f.arm(FaultPlan.cut(1, CutPoint.TORN))
    with pytest.raises(PowerLoss, match="torn"):
        f.program(0, data)
    f.power_on()
    keep = torn_keep(len(data), geom.write_align)
    assert 0 < keep < len(data)
    if geom.write_align > 1:
        assert keep % geom.write_align != 0  # the cut ends inside a write unit
    image = f.read(0, len(data))
    assert image[:keep] == data[:keep]
    assert image[keep:] == bytes([geom.erase_value]) * (len(data) - keep)
    # the unit the cut landed in is neither erased nor usable; the untouched ones are
    with pytest.raises(UnerasedWriteError):
        f.program((keep - 1) // geom.write_align * geom.write_align, pattern(unit(geom)))
    untouched = -(-keep // geom.write_align) * geom.write_align
    f.program(untouched, pattern(unit(geom)))
    assert f.snapshot().program_bytes == keep + unit(geom)


def test_torn_with_explicit_keep_and_torn_erase():
    g = FlashGeometry.uniform(4096, 2, write_align=8)
    f = FlashDevice(g)
    f.arm(FaultPlan.cut(1, CutPoint.TORN, keep=3))
    with pytest.raises(PowerLoss):
        f.program(0, b"ABCDEFGH" * 2)
    f.power_on()
    assert f.read(0, 16) == b"ABC" + b"\xff" * 13
    # a torn erase leaves the start erased, the rest old, and the sector unusable
    f.program(4096, b"X" * 4096)
    f.arm(FaultPlan.cut(1, CutPoint.TORN, keep=1000))
    with pytest.raises(PowerLoss):
        f.erase(4096, 4096)
    f.power_on()
    assert f.read(4096, 1000) == b"\xff" * 1000 and f.read(5096, 8) == b"X" * 8
    with pytest.raises(UnerasedWriteError):
        f.program(4096, b"Y" * 8)  # half-erased: must be erased again
    f.erase(4096, 4096)
    f.program(4096, b"Y" * 8)


def test_chained_cuts():
    g = FlashGeometry.uniform(4096, 4, write_align=4)
    f = FlashDevice(g)
    f.arm(FaultPlan(cuts=(PowerCut(2), PowerCut(5, CutPoint.AFTER))))
    done, cuts = 0, 0
    while done < 6:
        try:
            f.program(done * 4, pattern(4, done + 1))
            done += 1
        except PowerLoss:
            cuts += 1
            f.power_on()
            if f.read(done * 4, 4) == pattern(4, done + 1):
                done += 1  # the "after" cut: that op had landed
    assert cuts == 2
    assert f.mutations == 7  # six programs plus the one refused by the "before" cut
    assert all(f.read(i * 4, 4) == pattern(4, i + 1) for i in range(6))


def test_fault_plan_validation():
    with pytest.raises(FlashGeometryError):
        PowerCut(0)
    with pytest.raises(FlashGeometryError):
        PowerCut(1, CutPoint.BEFORE, keep=3)
    with pytest.raises(FlashGeometryError):
        FaultPlan(cuts=(PowerCut(2), PowerCut(2, CutPoint.AFTER)))
    with pytest.raises(FlashGeometryError):
        FailRange(0, 10, 1.5)


# ----------------------------------------------------------------------------- injected failures

def test_failures_with_probability_one_never_write(geom):
    f = FlashDevice(geom)
    meta = geom.sector_start(1)
    f.arm(FaultPlan(failures=(FailRange(meta, meta + geom.sectors[1], 1.0),)))
    for i in range(5):
        with pytest.raises(InjectedWriteError, match="injected"):
            f.program(meta + unit(geom, i), pattern(unit(geom)))
    assert f.read(meta, unit(geom, 5)) == bytes([geom.erase_value]) * unit(geom, 5)
    f.program(0, pattern(unit(geom)))  # outside the range: fine
    f.erase(meta, geom.sectors[1])  # erases are not failed unless asked
    assert f.snapshot().program_ops == 1


def test_failures_with_probability_half_are_seeded():
    g = FlashGeometry.uniform(4096, 4)

    def outcomes(seed: int) -> list[bool]:
        f = FlashDevice(g)
        f.arm(FaultPlan(failures=(FailRange(0, 4096, 0.5, erases=True),), seed=seed))
        result = []
        for i in range(200):
            try:
                f.program(i, b"\x00")
                result.append(True)
            except InjectedWriteError:
                result.append(False)
                assert f.read(i, 1) == b"\xff"
        return result

    a, b, c = outcomes(7), outcomes(7), outcomes(8)
    assert a == b  # same seed, same failures
    assert a != c
    assert 60 <= a.count(False) <= 140  # binomial(200, 0.5): far outside +-5 sigma otherwise


def test_failure_and_cut_on_the_same_op_is_a_power_loss():
    g = FlashGeometry.uniform(4096, 2)
    f = FlashDevice(g)
    f.arm(FaultPlan(cuts=(PowerCut(1, CutPoint.AFTER),), failures=(FailRange(0, 4096, 1.0),)))
    with pytest.raises(PowerLoss):
        f.program(0, b"\x00")
    assert not f.powered and f.image_bytes(0, 1) == b"\xff"


# ----------------------------------------------------------------------------- bad blocks

def worn_device(mode: BadBlock, cycles: int = 2) -> FlashDevice:
    """4 sectors; sector 1 has used its erase budget and holds data written before."""
    g = FlashGeometry.uniform(4096, 4, write_align=4, erase_cycles=cycles, name="tiny")
    f = FlashDevice(g, badblock=mode)
    for _ in range(cycles):
        f.erase(4096, 4096)
    f.program(4096 + 64, b"OLD!")  # programmed while worn: fails or drops depending on mode
    return f


def test_wear_follows_emubd():
    g = FlashGeometry.uniform(4096, 2, erase_cycles=3)
    f = FlashDevice(g, badblock=BadBlock.ERASEERROR)
    f.erase(0, 4096)
    f.erase(0, 4096)
    assert f.wear(0) == 2 and not f.is_worn(0)
    f.erase(0, 4096)  # the third erase succeeds and uses up the budget
    assert f.wear(0) == 3 and f.is_worn(0) and not f.is_worn(1)
    with pytest.raises(BadBlockEraseError):
        f.erase(0, 4096)
    assert f.wear(0) == 3


def test_badblock_progerror():
    g = FlashGeometry.uniform(4096, 4, write_align=4, erase_cycles=2)
    f = FlashDevice(g, badblock=BadBlock.PROGERROR)
    f.erase(4096, 4096)
    f.erase(4096, 4096)
    with pytest.raises(BadBlockProgramError, match=r"\[1\]") as info:
        f.program(4096, b"ABCD")
    assert isinstance(info.value, WornOutError)
    assert f.read(4096, 4) == b"\xff" * 4
    f.erase(4096, 4096)  # erase still works (emubd: only programs fail)
    f.program(0, b"ABCD")  # other sectors unaffected
    assert f.read(0, 4) == b"ABCD"


def test_badblock_eraseerror():
    f = worn_device(BadBlock.ERASEERROR)
    assert f.read(4096 + 64, 4) == b"OLD!"  # programs still work
    with pytest.raises(BadBlockEraseError):
        f.erase(4096, 4096)
    assert f.read(4096 + 64, 4) == b"OLD!"  # nothing erased
    # a multi-sector erase erases up to the bad sector, then reports it
    f.program(0, b"keep")
    with pytest.raises(BadBlockEraseError):
        f.erase(0, 8192)
    assert f.read(0, 4) == b"\xff" * 4


def test_badblock_readerror():
    f = worn_device(BadBlock.READERROR)
    with pytest.raises(BadBlockReadError):
        f.read(4096, 1)
    with pytest.raises(BadBlockReadError):
        f.read(4000, 200)  # touches the worn sector
    with pytest.raises(BadBlockReadError):
        f.view(4096, 8)
    assert f.read(0, 16) == b"\xff" * 16
    assert f.image_bytes(4096 + 64, 4) == b"OLD!"  # the bytes are there; the part cannot read them


def test_badblock_prognoop():
    f = worn_device(BadBlock.PROGNOOP)
    assert f.read(4096 + 64, 4) == b"\xff" * 4  # silently dropped
    with pytest.raises(UnerasedWriteError):
        f.program(4096 + 64, b"NEW!")  # the caller believes it programmed that unit
    f.erase(4096, 4096)
    f.program(4096 + 64, b"NEW!")
    assert f.read(4096 + 64, 4) == b"\xff" * 4


def test_badblock_erasenoop():
    g = FlashGeometry.uniform(4096, 4, write_align=4, erase_cycles=1)
    f = FlashDevice(g, badblock=BadBlock.ERASENOOP)
    f.erase(4096, 4096)  # budget used, sector worn
    f.program(4096, b"lost")  # emubd: ERASENOOP also drops programs
    assert f.read(4096, 4) == b"\xff" * 4
    # age a good sector with data, then its erase is dropped but the caller may program again
    f.program(2 * 4096, b"DATA")
    f.set_wear(2, 1)
    f.erase(2 * 4096, 4096)
    assert f.read(2 * 4096, 4) == b"DATA"
    f.program(2 * 4096, b"NEXT")  # no false "unerased" error blamed on the caller
    assert f.read(2 * 4096, 4) == b"DATA"


# ----------------------------------------------------------------------------- managed media

def test_managed_media_overwrite_and_trim():
    g = FlashGeometry.uniform(4096, 4, write_align=512, page_size=512, managed=True, name="sd")
    f = FlashDevice(g)
    f.program(0, b"A" * 512)
    f.program(0, b"B" * 512)  # overwrite in place
    assert f.read(0, 512) == b"B" * 512
    f.erase(0, 4096)  # trim: counted, contents unspecified (unchanged here)
    assert f.read(0, 512) == b"B" * 512
    assert f.snapshot().erase_ops == 1
    with pytest.raises(AlignmentError):
        f.program(100, b"C" * 512)


# ----------------------------------------------------------------------------- partitions

def test_partition_relative_and_fenced(geom):
    f = FlashDevice(geom)
    off, size = geom.sector_start(1), geom.sectors[1] + geom.sectors[2]
    p = Partition(f, off, size, "store")
    assert p.sectors == geom.sectors[1:3] and p.absolute(0) == off
    p.program(0, pattern(unit(geom)))
    assert f.read(off, unit(geom)) == pattern(unit(geom))
    assert p.read(0, unit(geom)) == pattern(unit(geom))
    assert bytes(p.view(0, unit(geom))) == pattern(unit(geom))
    for call in (lambda: p.read(size - 1, 2), lambda: p.program(size, pattern(unit(geom))),
                 lambda: p.erase(size, geom.sectors[3]), lambda: p.read(-1, 1), lambda: p.view(0, size + 1)):
        with pytest.raises(OutOfRangeError, match="store"):
            call()
    p.erase(0, size)
    assert f.read(0, unit(geom)) == bytes([geom.erase_value]) * unit(geom)  # neighbour untouched
    assert p.image_bytes() == bytes([geom.erase_value]) * size
    assert p.snapshot() == f.snapshot()


def test_partition_must_be_sector_aligned():
    f = FlashDevice(FlashGeometry.stm32f4(512 * KIB))
    with pytest.raises(FlashGeometryError):
        Partition(f, 16 * KIB, 40 * KIB, "bad")
    with pytest.raises(FlashGeometryError):
        Partition(f, 0, 1024 * KIB, "too-big")
    Partition(f, 64 * KIB, 64 * KIB, "one-64k-sector")


def test_mixed_sector_erase():
    f = FlashDevice(FlashGeometry.stm32f4(512 * KIB))
    f.program(64 * KIB - 1, b"\x00\x00")  # straddles the 16 KB / 64 KB boundary
    with pytest.raises(AlignmentError):
        f.erase(48 * KIB, 32 * KIB)  # ends inside the 64 KB sector
    f.erase(48 * KIB, 16 * KIB + 64 * KIB)
    assert f.read(64 * KIB - 1, 2) == b"\xff\xff"
    assert f.snapshot().sector_erases[3:5] == (1, 1)
