"""A slot's bytes: building a slot's whole aligned range, writing it, reading it back and
comparing, zeroing it, and the content digests the committed slot table records.

The base bytes inside a range (flatbuffer length prefixes, the spacer) come only from the slot
map's frame, trusted like the base digest; never from the image, which an interrupted write
may have damaged. Package bytes are borrowed for the duration of one write and never kept:
the manager's RAM budget for packages is the `PackageCache`'s alone.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Mapping, NamedTuple

from tinyswap.image import ModelImage
from tinyswap.package import AdapterPackage
from tinyswap.slotmap import SlotMap
from tinyswap.swap.errors import SlotVerifyError


@dataclass
class SwapStats:
    """Counters of slot writes (read like a dict: `stats["swaps"]`)."""

    swaps: int = 0  # slot ranges written and verified
    bytes_written: int = 0
    verify_failures: int = 0
    evictions: int = 0  # writes that replaced an adapter some name still pointed at

    def __getitem__(self, key: str) -> int:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class _Placement(NamedTuple):
    """Where one tensor sits in a slot's range (a tuple: read on every slot write)."""

    key: tuple[str, str]  # (layer, role)
    start: int  # offset within the slot's range
    length: int


def tensor_views(package: AdapterPackage) -> dict[tuple[str, str], memoryview]:
    """(layer, role) -> the package's bytes for that tensor (views owned by the package)."""
    return package.tensor_views


class SlotBytes:
    def __init__(self, image: ModelImage, slotmap: SlotMap) -> None:
        self.image = image
        self.slotmap = slotmap
        self.stats = SwapStats()
        # Per slot, in layout order (every slot lists its tensors in the same order).
        self._layout = [tuple(_Placement(t.key, t.offset - info.offset, t.length) for t in info.tensors)
                        for info in slotmap.slots]
        # The same placements as slices, for `build` (which runs on every slot write).
        self._spans = [tuple((p.key, slice(p.start, p.start + p.length), p.length) for p in layout)
                       for layout in self._layout]
        self._frames = [info.template() for info in slotmap.slots]
        self._write_lock = threading.Lock()  # one slot write at a time (one flash controller)
        self._content: dict[str, str] = {}  # package digest -> SHA-256 of the slot bytes it writes
        self.zero_content = self._digest({})

    # -- content digests ------------------------------------------------------------------------
    def _digest(self, tensors: Mapping[tuple[str, str], bytes | memoryview]) -> str:
        h = hashlib.sha256()
        for p in self._layout[0]:
            src = tensors.get(p.key)
            h.update(bytes(p.length) if src is None else src)  # zeros made only for a missing tensor
        return h.hexdigest()

    def remember(self, package: AdapterPackage) -> str:
        """The SHA-256 of the slot bytes `package` puts into a slot, computed once and kept (a
        64-character string, not the package) while the package is known."""
        digest = package.content_digest
        found = self._content.get(digest)
        if found is None:
            found = self._digest(tensor_views(package))
            self._content[digest] = found
        return found

    def content_of(self, digest: str | None) -> str | None:
        """The recorded content digest of a package digest (zeros for None; None if unknown)."""
        return self.zero_content if digest is None else self._content.get(digest)

    def known(self) -> set[str]:
        return set(self._content)

    def forget(self, digests: set[str]) -> None:
        for d in digests:
            self._content.pop(d, None)

    def read_content(self, slot: int) -> str:
        """SHA-256 of the tensor bytes the image holds in `slot` now (one read of the range)."""
        info = self.slotmap.slots[slot]
        data = memoryview(self.image.read(info.offset, info.length))
        h = hashlib.sha256()
        for p in self._layout[slot]:
            h.update(data[p.start : p.start + p.length])
        return h.hexdigest()

    # -- writing --------------------------------------------------------------------------------
    def build(self, slot: int, package: AdapterPackage | None) -> bytearray:
        """The slot's whole aligned range with the package's tensors in place (zeros for None)
        and the frame's base bytes between them."""
        data = bytearray(self._frames[slot])
        views = {} if package is None else package.tensor_views
        for key, span, length in self._spans[slot]:
            src = views.get(key)
            data[span] = bytes(length) if src is None else src
        return data

    def write(self, slot: int, package: AdapterPackage | None) -> None:
        """Write the range (zeros for None), read it back and compare every byte."""
        info = self.slotmap.slots[slot]
        data = self.build(slot, package)
        with self._write_lock:
            self.image.write(info.offset, data)
        # Read back from the storage and compare every byte of the range with what was written
        # (stronger than a digest, and no hashing on the swap path; the committed content
        # digest is the package's, computed once).
        back = self.image.read(info.offset, info.length)
        if back != data:
            self.stats.verify_failures += 1
            first = next(i for i, (x, y) in enumerate(zip(back, data)) if x != y) if len(back) == len(data) else 0
            raise SlotVerifyError(f"slot {slot}: the bytes read back differ from the written ones (first at "
                                  f"offset {info.offset + first}); the slot stays disabled")
        self.stats.swaps += 1
        self.stats.bytes_written += len(data)


__all__ = ["SlotBytes", "SwapStats", "tensor_views"]
