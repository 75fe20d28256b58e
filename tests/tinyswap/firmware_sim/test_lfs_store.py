"""The LittleFS adapter store: API, image compatibility, and power loss, bad blocks and
injected failures replayed exhaustively (MCUboot-style: count a clean run's operations, then
cut at each one and check the invariant after remounting)."""

from __future__ import annotations

import random
from typing import Callable

import littlefs
import pytest

from tinyswap.firmware_sim.errors import (
    AlignmentError,
    FlashMisuseError,
    PowerLoss,
    StoreError,
    StoreFullError,
    StoreIOError,
    StoreNameError,
    StoreNotFoundError,
    TinySwapError,
)
from tinyswap.firmware_sim.flash import KIB, BadBlock, CutPoint, FailRange, FaultPlan, FlashDevice, FlashGeometry, Partition, \
    PowerCut
from tinyswap.firmware_sim.lfs_store import TEMP_PREFIX, AdapterStore
from tinyswap.firmware_sim.storage import PROFILES, SD_SPI

from tests.conftest import FULL

OLD = b"old adapter " * 400  # 4.8 KB
NEW = bytes(range(256)) * 40  # 10 KB

# name -> geometry of the whole device; the store partition skips the first sector, so the
# partition offset is exercised (the "model image" would live there).
STORE_GEOMETRIES: dict[str, Callable[[], FlashGeometry]] = {
    "nor-4k-a1-ff": lambda: FlashGeometry.uniform(4 * KIB, 33, name="nor-4k"),
    "nor-4k-a4-00": lambda: FlashGeometry.uniform(4 * KIB, 33, erase_value=0x00, write_align=4, name="nor-4k-00"),
    "small-sector-a16": lambda: FlashGeometry.uniform(512, 129, write_align=16, page_size=64, name="small"),
    "sd-spi": lambda: SD_SPI.geometry(33 * 4 * KIB),
}


def make_store(g: FlashGeometry, image: bytes | None = None, **kwargs) -> tuple[FlashDevice, AdapterStore]:
    f = FlashDevice(g, image=image)
    first = g.sectors[0]
    return f, AdapterStore(Partition(f, first, g.size - first, "adapters"), **kwargs)


def seeded_image(g: FlashGeometry) -> bytes:
    """A formatted store holding OLD under "old"."""
    f, s = make_store(g)
    s.format()
    s.write("old", OLD)
    return f.image_bytes()


def reboot(f: FlashDevice, s: AdapterStore) -> None:
    f.power_on()
    f.disarm()
    s.mount()


# ----------------------------------------------------------------------------- API

@pytest.fixture
def store() -> tuple[FlashDevice, AdapterStore]:
    f, s = make_store(STORE_GEOMETRIES["nor-4k-a1-ff"]())
    s.format()
    return f, s


def test_roundtrip_list_delete_free(store):
    f, s = store
    assert s.list() == [] and s.mounted
    free0 = s.free_bytes()
    s.write("b", NEW)
    s.write("a", OLD)
    s.write("empty", b"")
    assert s.list() == ["a", "b", "empty"]
    assert s.read("b") == NEW and s.read("a") == OLD and s.read("empty") == b""
    assert s.free_bytes() <= free0 - 3 * 4 * KIB  # NEW spans three 4 KB blocks
    s.write("b", OLD)  # overwrite replaces
    assert s.read("b") == OLD
    s.delete("b")
    assert s.list() == ["a", "empty"] and not s.exists("b")
    with pytest.raises(StoreNotFoundError):
        s.read("b")
    with pytest.raises(StoreNotFoundError):
        s.delete("b")
    s.unmount()
    assert not s.mounted
    with pytest.raises(StoreError, match="not mounted"):
        s.list()
    s.mount()
    assert s.list() == ["a", "empty"]


@pytest.mark.parametrize("name", ["", "a/b", ".", "..", TEMP_PREFIX + "x", "n" * 300])
def test_bad_names(store, name):
    _, s = store
    with pytest.raises(StoreNameError):
        s.write(name, b"x")


def test_image_mounts_with_plain_littlefs(store):
    """The partition bytes are a LittleFS image that littlefs itself (firmware) mounts."""
    f, s = store
    s.write("adapter", NEW)
    part = s.partition
    ctx = littlefs.UserContext(buffer=bytearray(part.image_bytes()))
    fs = littlefs.LittleFS(context=ctx, mount=False, block_size=4096, block_count=len(part.sectors),
                           read_size=1, prog_size=1, cache_size=256, lookahead_size=8)
    fs.mount()
    assert fs.listdir("/") == ["adapter"]
    with fs.open("adapter", "rb") as fh:  # reading only: the double-close trap is a write-failure path
        assert fh.read() == NEW


def test_store_needs_uniform_sectors():
    f = FlashDevice(FlashGeometry.stm32f4(512 * KIB))
    with pytest.raises(StoreError, match="mixed"):
        AdapterStore(Partition(f, 0, 128 * KIB, "mixed"))


def test_mount_of_blank_flash_is_a_typed_error():
    _, s = make_store(STORE_GEOMETRIES["nor-4k-a1-ff"]())
    with pytest.raises(StoreError):
        s.mount()
    assert not s.mounted


def test_full_store_fails_cleanly(store):
    """A failed write (NOSPC mid-file) must not abort the process (double close) nor touch old data."""
    _, s = store
    s.write("a", OLD)
    with pytest.raises(StoreFullError):
        s.write("big", b"\x5a" * (200 * KIB))
    assert s.read("a") == OLD
    assert "big" not in s.list()
    s.write("b", NEW)  # still usable
    assert s.read("b") == NEW


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_store_on_every_storage_profile(profile):
    p = PROFILES[profile]
    if p.sector_map is not None:  # mixed map: put the store on its uniform 128 KB sectors
        g = p.geometry(512 * KIB)
        f = FlashDevice(g)
        part = Partition(f, 128 * KIB, 384 * KIB, "adapters")
    else:
        g = p.geometry(max(16 * p.sector_size, 64 * KIB))
        f = FlashDevice(g)
        part = Partition(f, 0, g.size, "adapters")
    s = AdapterStore(part)
    s.format()
    s.write("x", NEW)
    s.mount()
    assert s.read("x") == NEW
    assert f.snapshot().program_ops > 0


# ----------------------------------------------------------------------------- power loss

def classify(s: AdapterStore, name: str, old: bytes | None, new: bytes) -> str:
    """'old' / 'new' / 'absent' for `name`; anything else is a failure of the store."""
    if name not in s.list():
        assert old is None, f"{name!r} vanished although it held data before"
        return "absent"
    data = s.read(name)
    if data == new:
        return "new"
    assert old is not None and data == old, f"{name!r} holds {len(data)} bytes that are neither old nor new"
    return "old"


def clean_ops(g: FlashGeometry, image: bytes, name: str, data: bytes) -> int:
    f, s = make_store(g, image)
    s.mount()
    f.arm(FaultPlan())
    s.write(name, data)
    return f.mutations


def cut_once(g: FlashGeometry, image: bytes, cut: PowerCut, name: str, data: bytes, old: bytes | None) -> str:
    f, s = make_store(g, image)
    s.mount()
    f.arm(FaultPlan(cuts=(cut,)))
    try:
        s.write(name, data)
        completed = True
    except PowerLoss:
        completed = False
    assert not completed or f.powered
    reboot(f, s)
    assert s.read("old") == OLD if name != "old" else True
    state = classify(s, name, old, data)
    assert not completed or state == "new", "write returned success but the data is not there"
    assert not any(n.startswith(TEMP_PREFIX) for n in s.list())
    return state


def sweep(g: FlashGeometry, kinds: tuple[CutPoint, ...], name: str = "new", data: bytes = NEW,
          sample: int | None = None) -> dict[str, int]:
    image = seeded_image(g)
    old = OLD if name == "old" else None
    n = clean_ops(g, image, name, data)
    assert n > 3
    points = list(range(1, n + 1))
    if sample is not None and sample < n:
        points = sorted(set(random.Random(n).sample(points, sample)) | {1, n})
    outcomes: dict[str, int] = {}
    for i in points + [n + 1]:  # n + 1: the cut never fires, the write must complete
        for kind in kinds:
            state = cut_once(g, image, PowerCut(i, kind), name, data, old)
            outcomes[state] = outcomes.get(state, 0) + 1
    # the sweep must see both sides of the commit point, or it tested nothing
    assert outcomes.get("new", 0) >= 1 and (outcomes.get("absent", 0) + outcomes.get("old", 0)) >= 1
    return outcomes


@pytest.mark.parametrize("geometry", sorted(STORE_GEOMETRIES))
def test_exhaustive_single_cut_new_file(geometry):
    """Cut before and after every program/erase of writing a new file next to an existing one."""
    sweep(STORE_GEOMETRIES[geometry](), (CutPoint.BEFORE, CutPoint.AFTER))


@pytest.mark.parametrize("geometry", ["nor-4k-a4-00", "small-sector-a16"])
def test_exhaustive_torn_writes(geometry):
    """Cut inside every program (only part of it lands, ending inside a write unit)."""
    sweep(STORE_GEOMETRIES[geometry](), (CutPoint.TORN,))


def test_exhaustive_single_cut_overwrite():
    """Replacing an adapter under the same name: after any cut it is exactly old or exactly new."""
    outcomes = sweep(STORE_GEOMETRIES["nor-4k-a1-ff"](), (CutPoint.BEFORE, CutPoint.AFTER, CutPoint.TORN),
                     name="old", data=NEW)
    assert "absent" not in outcomes


@pytest.mark.parametrize("keep", [0, 1, 5])
def test_torn_write_fixed_points(keep):
    g = STORE_GEOMETRIES["nor-4k-a4-00"]()
    image = seeded_image(g)
    n = clean_ops(g, image, "new", NEW)
    for i in (1, n // 2, n):
        cut_once(g, image, PowerCut(i, CutPoint.TORN, keep=keep), "new", NEW, None)


def test_chained_cuts_converge():
    """Up to 5 seeded random cuts in one write; re-applying after each reboot converges."""
    g = STORE_GEOMETRIES["nor-4k-a1-ff"]()
    image = seeded_image(g)
    n = clean_ops(g, image, "new", NEW)
    rng = random.Random(2024)
    for trial in range(20):
        count = rng.randint(2, 5)
        points = sorted({rng.randint(1, n)} | set(rng.sample(range(n + 1, 3 * n), count - 1)))
        kinds = [rng.choice(list(CutPoint)) for _ in points]
        f, s = make_store(g, image)
        s.mount()
        f.arm(FaultPlan(cuts=tuple(PowerCut(p, k) for p, k in zip(points, kinds))))
        cuts = 0
        while True:
            try:
                s.write("new", NEW)
                break
            except PowerLoss:
                cuts += 1
                f.power_on()
                try:
                    s.mount()  # the mount's own cleanup may be cut too
                except PowerLoss:
                    f.power_on()
                    s.mount()
                assert s.read("old") == OLD
                classify(s, "new", None, NEW)
        assert cuts >= 1, f"trial {trial}: no cut fired at {points}"
        f.disarm()
        s.mount()
        assert s.read("new") == NEW and s.read("old") == OLD


def test_power_off_outside_a_cut():
    g = STORE_GEOMETRIES["nor-4k-a1-ff"]()
    f, s = make_store(g, seeded_image(g))
    s.mount()
    f.power_off()
    with pytest.raises(PowerLoss):
        s.write("new", NEW)
    assert not s.mounted
    with pytest.raises(PowerLoss):
        s.mount()  # no power, no mount
    f.power_on()
    s.mount()
    assert s.list() == ["old"]


@pytest.mark.slow
@pytest.mark.parametrize("geometry", sorted(STORE_GEOMETRIES))
def test_exhaustive_all_cut_kinds_large_file(geometry):
    """The full sweep: every cut kind at every operation, a 40 KB adapter, new and overwrite."""
    g = STORE_GEOMETRIES[geometry]()
    big = bytes((i * 7 + 3) % 256 for i in range(40 * KIB))
    sweep(g, tuple(CutPoint), name="new", data=big)
    sweep(g, tuple(CutPoint), name="old", data=big)


# ----------------------------------------------------------------------------- injected failures

def test_failing_writes_p1_never_report_success():
    g = STORE_GEOMETRIES["nor-4k-a1-ff"]()
    f, s = make_store(g, seeded_image(g))
    s.mount()
    part = s.partition
    f.arm(FaultPlan(failures=(FailRange(part.absolute(0), part.absolute(part.size), 1.0),)))
    with pytest.raises(StoreIOError):
        s.write("new", NEW)
    f.disarm()
    s.mount()
    assert s.read("old") == OLD and "new" not in s.list()


@pytest.mark.parametrize("seed", range(8 if not FULL else 64))
def test_failing_writes_p05_are_old_or_new(seed):
    g = STORE_GEOMETRIES["nor-4k-a1-ff"]()
    f, s = make_store(g, seeded_image(g))
    s.mount()
    part = s.partition
    f.arm(FaultPlan(failures=(FailRange(part.absolute(0), part.absolute(part.size), 0.5, erases=True),),
                    seed=seed))
    last = OLD
    for i in range(6):
        data = bytes([i + 1]) * (3000 + 500 * i)
        try:
            if not s.mounted:
                s.mount()
            s.write("old", data)
            assert s.read("old") == data
            last = data
        except StoreError:
            if s.mounted:
                got = s.read("old") if "old" in s.list() else None
                assert got in (last, data), "a failed write left neither the old nor the new bytes"
                if got == data:
                    last = data
        except TinySwapError as exc:  # any other refusal must still be one of ours
            assert isinstance(exc, TinySwapError)
    f.disarm()
    s.mount()
    assert s.read("old") == last


# ----------------------------------------------------------------------------- wear-out

@pytest.mark.parametrize("mode", list(BadBlock))
def test_wear_out_reports_or_works_around(mode):
    """A tiny device with 10 erase cycles per block: every write either succeeds and reads back
    exactly, or raises a typed store error leaving the old or the new bytes; nothing else."""
    g = FlashGeometry.uniform(512, 32, write_align=4, page_size=64, erase_cycles=10, name="tiny")
    f = FlashDevice(g, badblock=mode)
    s = AdapterStore(Partition(f, 0, g.size, "adapters"), block_cycles=5)
    s.format()
    last: bytes | None = None
    failures = 0
    for i in range(250):
        data = bytes([i % 251 + 1]) * (700 + i % 300)
        try:
            if not s.mounted:
                s.mount()
            s.write("a", data)
            last = data
        except StoreError:
            failures += 1
            try:
                if not s.mounted:
                    s.mount()
                got = s.read("a")
            except StoreError:
                continue  # reported, not silently wrong
            assert got in (last, data)
            last = got
    worn = sum(f.is_worn(i) for i in range(g.sector_count))
    assert failures > 0 and worn >= 1, "the test never wore the device out"
    if mode is not BadBlock.READERROR:
        # littlefs relocates around bad programs/erases until most blocks are gone; with
        # READERROR the first unreadable block stops every operation that reads it (reported)
        assert worn > g.sector_count // 2


class _OffByOne(Partition):
    """A buggy block-device driver: programs land one byte past where littlefs asked."""

    def program(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        super().program(offset + 1, data)


def test_a_driver_bug_inside_littlefs_is_raised_as_itself_not_as_a_store_error():
    """littlefs callbacks cannot raise into C; a misuse error is kept and re-raised after the
    call, so the store never reports a bug as an I/O error that firmware would work around."""
    g = FlashGeometry.uniform(4 * KIB, 33, write_align=4, name="nor-4k-a4")
    f = FlashDevice(g)
    with pytest.raises(AlignmentError) as err:
        AdapterStore(_OffByOne(f, g.sectors[0], g.size - g.sectors[0], "adapters")).format()
    assert isinstance(err.value, FlashMisuseError) and not isinstance(err.value, StoreError)
