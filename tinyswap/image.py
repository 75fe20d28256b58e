"""The writable model image a swap manager writes slots into.

The interpreter reads constants in place from `buffer` (zero copy), so bytes written through
`write` are what the next `invoke()` uses, as on a device executing the model from flash. The
swap manager needs only this protocol; the simulated device supplies a flash-backed image
(`firmware_sim`), and `RamImage` is the plain host-memory one (also what a device that copies
its model to RAM at boot has).
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from tinyswap.errors import TinySwapError


class ImageWriteError(TinySwapError):
    """A write into the model image failed or was refused (range, storage error, power loss)."""


@runtime_checkable
class ModelImage(Protocol):
    @property
    def buffer(self) -> bytearray | memoryview:
        """The bytes the interpreter reads in place (must stay the same object for its lifetime)."""
        ...

    def read(self, offset: int, length: int) -> bytes:
        """A copy of `length` bytes at `offset`, as the storage returns them."""
        ...

    def write(self, offset: int, data: bytes) -> None:
        """Replace bytes [offset, offset + len(data)); the range is one slot's aligned range."""
        ...

    def pre_erase(self, offset: int, blank: bytes, tensor_spans: Sequence[tuple[int, int]]) -> bool:
        """Idle time: make the next `write` of this range cheaper (flash: erase it now and
        program its non-tensor bytes, `blank` outside `tensor_spans`, so the write only programs
        tensors). True if the range is now prepared; False if this storage needs or allows no
        such step. The range then holds `blank` with its tensor bytes undefined: no adapter may
        use it until it is written."""
        ...


class RamImage:
    """A model image in host RAM: a `bytearray` written by slice assignment."""

    def __init__(self, data: bytes | bytearray) -> None:
        self._data = bytearray(data)
        self.writes = 0
        self.bytes_written = 0

    @property
    def buffer(self) -> bytearray:
        return self._data

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        return bytes(self._data[offset : offset + length])

    def write(self, offset: int, data: bytes) -> None:
        self._check(offset, len(data))
        self._data[offset : offset + len(data)] = data  # same length: the buffer never moves
        self.writes += 1
        self.bytes_written += len(data)

    def pre_erase(self, offset: int, blank: bytes, tensor_spans: Sequence[tuple[int, int]]) -> bool:
        """RAM is overwritten in place: nothing to prepare."""
        self._check(offset, len(blank))
        return False

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > len(self._data):
            raise ImageWriteError(f"range [{offset}, {offset + length}) is outside the {len(self._data)}-byte image")


__all__ = ["ImageWriteError", "ModelImage", "RamImage"]
