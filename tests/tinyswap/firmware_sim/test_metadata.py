"""The metadata partition: record layout, rotation, torn records, failed writes, wear-out."""

from __future__ import annotations

import hashlib
import itertools
import struct

import pytest

from tinyswap.firmware_sim import metadata
from tinyswap.firmware_sim.errors import (
    FlashError,
    MetadataError,
    MetadataFullError,
    MetadataWriteError,
    PowerLoss,
    UnerasedWriteError,
)
from tinyswap.firmware_sim.flash import KIB, BadBlock, CutPoint, FailRange, FaultPlan, FlashDevice, FlashGeometry, Partition
from tinyswap.firmware_sim.metadata import MAGIC, MetadataStore, encode_record
from tinyswap.firmware_sim.storage import SD_SPI

GEOMETRIES = {
    "nor4k": lambda ev, a: FlashGeometry.uniform(4 * KIB, 4, erase_value=ev, write_align=a, name="nor4k"),
    "small": lambda ev, a: FlashGeometry.uniform(1 * KIB, 8, erase_value=ev, write_align=a, page_size=64,
                                                 name="small"),
}
MATRIX = list(itertools.product(GEOMETRIES, (0xFF, 0x00), (1, 16)))


def store_on(g: FlashGeometry, areas: int = 2, **kw) -> tuple[FlashDevice, MetadataStore]:
    f = FlashDevice(g, **kw)
    md = MetadataStore(Partition(f, 0, g.size, "metadata"), areas)
    md.format()
    return f, md


def payload(i: int) -> dict:
    return {"n": i, "text": "x" * (100 + 37 * i), "nested": {"list": list(range(i % 7))}}


def reload(f: FlashDevice, areas: int = 2) -> MetadataStore:
    md = MetadataStore(Partition(f, 0, f.size, "metadata"), areas)
    md.load()
    return md


def test_record_layout_byte_by_byte():
    data = encode_record(7, {"a": 1})
    assert data[0:4] == MAGIC == b"TSMD"  # magic
    assert struct.unpack_from("<H", data, 4) == (1,)  # format version
    assert struct.unpack_from("<Q", data, 6) == (7,)  # sequence number
    assert struct.unpack_from("<I", data, 14) == (7,)  # JSON length: {"a":1}
    assert data[18:25] == b'{"a":1}'  # canonical JSON
    assert data[25:] == hashlib.sha256(data[:25]).digest()  # SHA-256 of everything before it


@pytest.mark.parametrize("geo,ev,wa", MATRIX, ids=[f"{g}-{ev:02x}-a{a}" for g, ev, a in MATRIX])
def test_commits_alternate_areas_and_the_newest_valid_record_wins(geo, ev, wa):
    f, md = store_on(GEOMETRIES[geo](ev, wa))
    assert md.load() is None  # formatted: nothing valid
    areas = []
    for i in range(1, 6):
        rec = md.commit(payload(i))
        areas.append(rec.area)
        back = reload(f)
        assert back.current.payload == payload(i) and back.current.sequence == rec.sequence
    assert areas == [0, 1, 0, 1, 0]
    # Corrupt the newest record: the previous one stands.
    newest = md.current
    start = md.areas[newest.area][0]
    image = bytearray(f.image_bytes())
    image[start + 20] ^= 0x01
    g = f.geometry
    f2 = FlashDevice(g, image=bytes(image))
    assert reload(f2).current.payload == payload(4)


@pytest.mark.parametrize("geo,ev,wa", MATRIX, ids=[f"{g}-{ev:02x}-a{a}" for g, ev, a in MATRIX])
def test_a_cut_anywhere_in_a_commit_leaves_the_old_or_the_new_record(geo, ev, wa):
    g = GEOMETRIES[geo](ev, wa)
    f, md = store_on(g)
    md.commit(payload(1))
    start = f.image_bytes()
    f.arm(FaultPlan())
    md.commit(payload(2))
    n = f.mutations
    seen = set()
    for i in range(1, n + 1):
        for when in CutPoint:
            f = FlashDevice(g, image=start)
            md = reload(f)
            f.arm(FaultPlan.cut(i, when))
            with pytest.raises(PowerLoss):
                md.commit(payload(2))
            f.power_on()
            got = reload(f).current.payload
            complete = i if when is CutPoint.AFTER else i - 1
            assert got == (payload(2) if complete == n else payload(1)), (i, when)
            seen.add(got["n"])
    assert seen == {1, 2}


@pytest.mark.parametrize("probability", [1.0, 0.5])
def test_failed_writes_are_never_a_silent_success(probability):
    g = GEOMETRIES["nor4k"](0xFF, 1)
    f, md = store_on(g)
    md.commit(payload(0))
    f.arm(FaultPlan(failures=(FailRange(0, g.size, probability, erases=True),), seed=3))
    outcomes = []
    last = payload(0)
    for i in range(1, 30):
        try:
            md.commit(payload(i))
        except MetadataWriteError as exc:
            assert "previous record stands" in str(exc)
            outcomes.append(False)
        else:
            last = payload(i)
            outcomes.append(True)
        # What a reboot finds is exactly the last commit that returned.
        assert reload(f).current.payload == last
        assert md.current.payload == last
    if probability == 1.0:
        assert not any(outcomes)
    else:
        assert any(outcomes) and not all(outcomes)


def test_a_record_larger_than_an_area_is_refused():
    f, md = store_on(GEOMETRIES["small"](0xFF, 1))
    md.commit(payload(1))
    before = f.snapshot()
    with pytest.raises(MetadataFullError):
        md.commit({"big": "y" * 5000})
    assert (f.snapshot() - before).mutating_ops == 0
    assert reload(f).current.payload == payload(1)


def test_with_three_areas_a_failing_area_is_skipped():
    g = GEOMETRIES["nor4k"](0xFF, 1)  # 4 sectors: 2 areas of 2 sectors, or 4 areas of one
    f, md = store_on(g, areas=4)
    md.commit(payload(1))  # area 0
    f.arm(FaultPlan(failures=(FailRange(4 * KIB, 8 * KIB, 1.0, erases=True),)))  # area 1 fails
    rec = md.commit(payload(2))
    assert rec.area == 2
    assert reload(f, 4).current.payload == payload(2)


def test_on_managed_media_records_overwrite_in_place():
    g = SD_SPI.geometry(4 * 4 * KIB)
    f, md = store_on(g)
    for i in range(1, 5):
        md.commit(payload(i))
        assert reload(f).current.payload == payload(i)
    assert f.snapshot().erase_ops == 0  # no trim issued


@pytest.mark.parametrize("mode", list(BadBlock))
def test_worn_out_areas_report_errors_and_keep_the_last_good_record(mode):
    g = FlashGeometry.uniform(1 * KIB, 2, page_size=64, erase_cycles=10, name="tiny")
    f, md = store_on(g, badblock=mode)
    last, errors = None, 0
    for i in range(40):
        try:
            md.commit(payload(i % 5))
            last = payload(i % 5)
        except MetadataWriteError:
            errors += 1
        assert reload(f).current.payload == last
    assert errors > 0 and last is not None


def test_a_driver_bug_is_not_a_failed_commit(monkeypatch):
    """A program into unerased flash (here: a driver that forgot to erase) is a misuse error,
    raised as itself: a failed commit would be retried in another area and reported as wear."""
    f, md = store_on(GEOMETRIES["nor4k"](0xFF, 1))
    md.commit(payload(1))
    md.commit(payload(2))  # both areas hold a record now
    monkeypatch.setattr(metadata, "erase_sectors", lambda part, offset, length: 0)
    with pytest.raises(UnerasedWriteError) as err:
        md.commit(payload(3))
    assert not isinstance(err.value, (MetadataError, FlashError))
    assert reload(f).current.payload == payload(2)  # nothing was written


@pytest.mark.parametrize("geo,ev,wa", [("nor4k", 0xFF, 1), ("small", 0x00, 16)])
def test_prepare_erases_the_other_areas_so_a_commit_only_programs_until_the_next_boot(geo, ev, wa):
    g = GEOMETRIES[geo](ev, wa)
    f, md = store_on(g, areas=4)
    md.commit(payload(1))
    current = md.current.area
    before = f.snapshot()
    assert md.prepare() == 3  # every area but the current one
    assert f.snapshot().erase_ops - before.erase_ops == 3 * (len(md.partition.sectors) // 4)
    assert md.prepare() == 0  # known erased: nothing to do
    assert md.current.area == current and reload(f, 4).current.payload == payload(1)  # untouched
    before = f.snapshot()
    md.commit(payload(2))
    md.commit(payload(3))
    assert f.snapshot().erase_ops == before.erase_ops  # both commits landed in pre-erased areas
    assert (md.erases_on_commit, md.last_commit_erased) == (1, False)  # only the factory commit erased
    md.load()  # a reboot: nothing is trusted as erased any more
    md.commit(payload(4))
    assert md.last_commit_erased and md.erases_on_commit == 2
    assert reload(f, 4).current.payload == payload(4)
