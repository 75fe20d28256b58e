"""Slot bytes: a range is built from the slot map's frame (never from the image), written, read
back and compared; content digests of packages and of what a slot holds."""

from __future__ import annotations

import hashlib

import pytest

from tinyswap.image import RamImage
from tinyswap.package import parse_package
from tinyswap.slotmap import SlotMap
from tinyswap.swap import SlotVerifyError, SwapStats
from tinyswap.swap.slot_bytes import SlotBytes



class LyingImage(RamImage):
    """Storage that flips one bit of every write (a failing flash cell)."""

    def write(self, offset: int, data: bytes) -> None:
        damaged = bytearray(data)
        damaged[len(damaged) // 2] ^= 0x10
        super().write(offset, bytes(damaged))


def test_a_range_is_the_frame_plus_the_packages_tensors(bundle, packages) -> None:
    smap = SlotMap.from_json(bundle.smap)
    pkg = parse_package(packages["A"])
    image = RamImage(bundle.data)
    info = smap.slots[1]
    image.buffer[info.offset : info.offset + info.length] = b"\xff" * info.length  # a damaged range
    slots = SlotBytes(image, smap)
    zeros = slots.build(1, None)
    assert bytes(zeros) == info.template() == bytes(bundle.data[info.offset : info.offset + info.length])
    data = slots.build(1, pkg)
    wanted = {(t.layer, t.role): bytes(pkg.tensor_bytes(t)) for t in pkg.tensors}
    for t in info.tensors:
        assert bytes(data[t.offset - info.offset : t.offset - info.offset + t.length]) == wanted[t.key]
    slots.write(1, pkg)
    assert image.read(info.offset, info.length) == bytes(data)
    assert slots.read_content(1) == slots.remember(pkg) != slots.zero_content
    assert slots.stats.swaps == 1 and slots.stats["bytes_written"] == info.length
    slots.write(1, None)
    assert bytes(image.buffer) == bundle.data  # zeroing restores the compiled model exactly
    assert slots.read_content(1) == slots.zero_content == slots.content_of(None)


def test_a_write_that_reads_back_differently_is_refused(bundle, packages) -> None:
    smap = SlotMap.from_json(bundle.smap)
    slots = SlotBytes(LyingImage(bundle.data), smap)
    with pytest.raises(SlotVerifyError, match="slot 0: the bytes read back differ"):
        slots.write(0, parse_package(packages["A"]))
    assert slots.stats.verify_failures == 1 and slots.stats.swaps == 0


def test_content_digests_are_kept_per_package_digest_and_forgotten_on_request(bundle, packages) -> None:
    smap = SlotMap.from_json(bundle.smap)
    slots = SlotBytes(RamImage(bundle.data), smap)
    pkg = parse_package(packages["B"])
    h = hashlib.sha256()
    views = {(t.layer, t.role): bytes(pkg.tensor_bytes(t)) for t in pkg.tensors}
    for t in smap.layout:
        h.update(views.get(t.key, bytes(t.length)))
    assert slots.content_of(pkg.content_digest) is None
    assert slots.remember(pkg) == h.hexdigest() == slots.content_of(pkg.content_digest)
    assert slots.known() == {pkg.content_digest}
    slots.forget({pkg.content_digest})
    assert slots.known() == set() and slots.content_of(pkg.content_digest) is None


def test_stats_read_like_a_dict() -> None:
    stats = SwapStats(swaps=3)
    assert stats["swaps"] == 3 and stats.as_dict() == {"swaps": 3, "bytes_written": 0, "verify_failures": 0,
                                                       "evictions": 0}
    with pytest.raises(KeyError):
        stats["nope"]
