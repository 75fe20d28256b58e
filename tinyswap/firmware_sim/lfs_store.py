"""The adapter store: LittleFS (through `littlefs-python`) on a simulated flash partition.

Why LittleFS: it is what Zephyr and most RTOS firmware mount on NOR and SD, and it is built
to survive power loss. Driving the real C implementation over our `Partition` means the
image we test is exactly what the firmware would mount, and every program/erase goes through
the simulator's physics, counters and fault plan.

Atomicity: `write(name, data)` writes a temporary file `.tmp-<name>`, closes it (littlefs
commits a file's contents atomically on close), then renames it over `name` (a rename inside
one directory is a single metadata commit in littlefs, so the name switches atomically).
Writing `name` directly would not do: littlefs creates the directory entry at open, so a cut
between open and close leaves an empty file under the final name. With the rename, after any
power cut `name` holds exactly the old data or exactly the new data. Stale temporaries are
removed at mount.

Power loss follows `docs/storage-facts.md` ("littlefs-python in practice"): when
the flash raises `PowerLoss` inside a callback, the context swallows it and from then on drops
every program and erase and serves reads from the image frozen at the cut; the littlefs call
is allowed to finish, the file-system object is discarded, and `PowerLoss` is raised to the
caller, who must `power_on()` the flash and `mount()` again. All file I/O uses the low-level
`littlefs.lfs.file_open/file_write/file_close` on `fs.fs`, closing each handle exactly once:
the high-level `LittleFS.open()` file object closes a second time after a failed write and
trips a C assertion that aborts the process.

Bad blocks: a program or erase refused by a worn-out sector is returned to littlefs as
LFS_ERR_CORRUPT, which makes littlefs relocate the block (as with its own emubd). The
`littlefs-python` read callback cannot return an error (its wrapper always reports success),
so a failed read is recorded, every later program/erase of the same call fails with
LFS_ERR_IO (nothing built from the filler bytes littlefs got can be committed), and the store
raises `StoreIOError` after the call. A `FlashMisuseError` inside a callback (a misaligned or
unerased program: a bug, not a fault) cannot propagate through the C code either; it is kept
and re-raised as itself after the call, never turned into a store error. Whenever a store
operation raises a `StoreError`, `name` holds its old or its new bytes, exactly as after a
power cut; the caller must not assume which.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import littlefs
from littlefs import LittleFSError, lfs

from tinyswap.firmware_sim.errors import (
    BadBlockEraseError,
    BadBlockProgramError,
    BadBlockReadError,
    FlashError,
    PowerLoss,
    StoreCorruptError,
    StoreError,
    StoreFullError,
    StoreIOError,
    StoreNameError,
    StoreNotFoundError,
)
from tinyswap.firmware_sim.flash import Partition

T = TypeVar("T")

TEMP_PREFIX = ".tmp-"
NAME_MAX = 255  # littlefs LFS_NAME_MAX default

LFS_ERR_OK = 0
LFS_ERR_IO = int(LittleFSError.Error.LFS_ERR_IO)
LFS_ERR_CORRUPT = int(LittleFSError.Error.LFS_ERR_CORRUPT)


class PartitionContext(littlefs.UserContext):
    """littlefs block-device callbacks over a `Partition`; block i is the partition's sector i.

    Never raises into littlefs (the Cython callbacks are `noexcept`): flash faults become
    littlefs error codes, power loss becomes silence; misuse and anything unexpected are
    recorded (`bugs`) and the store re-raises them after the littlefs call.
    """

    def __init__(self, partition: Partition, block_size: int) -> None:
        # The base class wants an in-RAM buffer; we serve the partition instead.
        self.partition = partition
        self.block_size = block_size
        self.in_size = partition.size
        self.lost: PowerLoss | None = None
        self.read_errors: list[BadBlockReadError] = []
        self.io_errors: list[Exception] = []
        self.bugs: list[Exception] = []  # misuse and unexpected errors: re-raised as they are
        self._frozen: bytes | None = None

    def reset_errors(self) -> None:
        self.read_errors.clear()
        self.io_errors.clear()
        self.bugs.clear()

    def _power_lost(self, exc: PowerLoss) -> None:
        if self.lost is None:
            self.lost = exc
            self._frozen = self.partition.image_bytes()

    def read(self, cfg: lfs.LFSConfig, block: int, off: int, size: int) -> bytes:
        start = block * self.block_size + off
        if self.lost is None:
            try:
                return self.partition.read(start, size)
            except PowerLoss as exc:
                self._power_lost(exc)
            except BadBlockReadError as exc:
                # littlefs-python cannot pass a read error to littlefs, so littlefs goes on
                # with filler bytes; poisoning makes every later program/erase of this call
                # fail with LFS_ERR_IO, so nothing derived from the filler is ever committed.
                self.read_errors.append(exc)
                return bytes([self.partition.erase_value]) * size
            except FlashError as exc:  # any other fault of the part
                self.io_errors.append(exc)
                return bytes([self.partition.erase_value]) * size
            except Exception as exc:  # noqa: BLE001 - must not propagate into C
                self.bugs.append(exc)
                return bytes([self.partition.erase_value]) * size
        assert self._frozen is not None
        return self._frozen[start:start + size]

    @property
    def poisoned(self) -> bool:
        return bool(self.read_errors or self.io_errors or self.bugs)

    def prog(self, cfg: lfs.LFSConfig, block: int, off: int, data: bytes) -> int:
        if self.lost is not None:
            return LFS_ERR_OK  # after the cut, programs are lost silently
        if self.poisoned:
            return LFS_ERR_IO
        try:
            self.partition.program(block * self.block_size + off, data)
        except PowerLoss as exc:
            self._power_lost(exc)
        except BadBlockProgramError:
            return LFS_ERR_CORRUPT  # littlefs relocates the block
        except FlashError as exc:  # injected failures
            self.io_errors.append(exc)
            return LFS_ERR_IO
        except Exception as exc:  # noqa: BLE001 - misuse and anything unexpected: a bug
            self.bugs.append(exc)
            return LFS_ERR_IO
        return LFS_ERR_OK

    def erase(self, cfg: lfs.LFSConfig, block: int) -> int:
        if self.lost is not None:
            return LFS_ERR_OK
        if self.poisoned:
            return LFS_ERR_IO
        try:
            self.partition.erase(block * self.block_size, self.block_size)
        except PowerLoss as exc:
            self._power_lost(exc)
        except BadBlockEraseError:
            return LFS_ERR_CORRUPT
        except FlashError as exc:
            self.io_errors.append(exc)
            return LFS_ERR_IO
        except Exception as exc:  # noqa: BLE001
            self.bugs.append(exc)
            return LFS_ERR_IO
        return LFS_ERR_OK

    def sync(self, cfg: lfs.LFSConfig) -> int:
        return LFS_ERR_OK  # the simulated flash has no write cache


class AdapterStore:
    """Named adapter blobs in a LittleFS image on a uniform-sector partition.

    Parameters:
        block_cycles: littlefs's wear-levelling period (erases before a metadata pair moves);
            littlefs suggests 100-1000, small values help wear-out tests.
        verify_writes: read each written file back and compare before returning, so a
            silently dropped program can never be reported as a successful write.
    """

    def __init__(self, partition: Partition, *, block_cycles: int = 100, verify_writes: bool = True) -> None:
        block_size = set(partition.sectors)
        if len(block_size) != 1:
            raise StoreError(f"partition {partition.name!r} has mixed sector sizes {sorted(block_size)}; "
                             "littlefs needs uniform blocks")
        self.partition = partition
        self.block_size = block_size.pop()
        self.block_count = len(partition.sectors)
        self.block_cycles = block_cycles
        self.verify_writes = verify_writes
        self._fs: littlefs.LittleFS | None = None
        self._ctx: PartitionContext | None = None

    # ---------------------------------------------------------------- lifecycle
    @property
    def mounted(self) -> bool:
        return self._fs is not None

    def format(self) -> None:
        """Create an empty file system on the partition and mount it."""
        self._discard()
        fs, ctx = self._new_fs()
        self._call(ctx, lambda: lfs.format(fs.fs, fs.cfg), "format", fatal=StoreCorruptError)
        self.mount()

    def mount(self) -> None:
        """Mount the image as it is on flash (after a power cut: the frozen image), then
        remove temporaries left by an interrupted write."""
        self._discard()
        fs, ctx = self._new_fs()
        self._call(ctx, lambda: lfs.mount(fs.fs, fs.cfg), "mount", fatal=StoreCorruptError)
        self._fs, self._ctx = fs, ctx
        for name in self._names(include_temp=True):
            if name.startswith(TEMP_PREFIX):
                self._op("remove stale temporary", lambda f, n=name: lfs.remove(f.fs, n))

    def unmount(self) -> None:
        if self._fs is not None:
            self._op("unmount", lambda f: lfs.unmount(f.fs))
        self._discard()

    # ---------------------------------------------------------------- operations
    def write(self, name: str, data: bytes | bytearray | memoryview) -> None:
        """Store `data` under `name`, atomically: afterwards (or after any power cut) `name`
        holds exactly the old bytes or exactly `data`."""
        self._check_name(name)
        payload = bytes(data)
        temp = TEMP_PREFIX + name

        def run(fs: littlefs.LittleFS) -> None:
            flags = lfs.LFSFileFlag.wronly | lfs.LFSFileFlag.creat | lfs.LFSFileFlag.trunc
            fh = lfs.file_open(fs.fs, temp, flags)
            try:
                if payload:
                    lfs.file_write(fs.fs, fh, payload)
            except BaseException:
                try:
                    lfs.file_close(fs.fs, fh)  # the one close: releases the handle
                except LittleFSError:
                    pass
                raise
            # littlefs removes the handle from its open list even when close fails, so a
            # failed close must not be retried (that is the double close that aborts).
            lfs.file_close(fs.fs, fh)
            lfs.rename(fs.fs, temp, name)

        self._op(f"write {name!r}", run)
        if self.verify_writes:
            back = self.read(name)
            if back != payload:
                raise StoreIOError(f"write {name!r}: read-back differs from the data written "
                                   f"({len(back)} vs {len(payload)} bytes)")

    def read(self, name: str) -> bytes:
        """The bytes stored under `name`."""
        self._check_name(name)

        def run(fs: littlefs.LittleFS) -> bytes:
            size = lfs.stat(fs.fs, name).size
            fh = lfs.file_open(fs.fs, name, lfs.LFSFileFlag.rdonly)
            try:
                data = bytes(lfs.file_read(fs.fs, fh, size)) if size else b""
            finally:
                lfs.file_close(fs.fs, fh)
            if len(data) != size:
                raise StoreIOError(f"read {name!r}: got {len(data)} of {size} bytes")
            return data

        return self._op(f"read {name!r}", run)

    def exists(self, name: str) -> bool:
        return name in self.list()

    def list(self) -> list[str]:
        """Names of the stored adapters, sorted (temporaries are not listed)."""
        return self._names(include_temp=False)

    def delete(self, name: str) -> None:
        self._check_name(name)
        self._op(f"delete {name!r}", lambda fs: lfs.remove(fs.fs, name))

    def free_bytes(self) -> int:
        """Bytes in blocks littlefs does not use (whole blocks; metadata overhead not deducted)."""
        used = self._op("free_bytes", lambda fs: lfs.fs_size(fs.fs))
        return max(0, self.block_count - int(used)) * self.block_size

    # ---------------------------------------------------------------- internals
    def _names(self, include_temp: bool) -> list[str]:
        def run(fs: littlefs.LittleFS) -> list[str]:
            names = []
            dh = lfs.dir_open(fs.fs, "/")
            try:
                while (info := lfs.dir_read(fs.fs, dh)) is not None:
                    if info.type == lfs.LFSStat.TYPE_REG and (include_temp or not info.name.startswith(TEMP_PREFIX)):
                        names.append(info.name)
            finally:
                lfs.dir_close(fs.fs, dh)
            return sorted(names)

        return self._op("list", run)

    def _check_name(self, name: str) -> None:
        if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
            raise StoreNameError(f"adapter name {name!r} must be a non-empty name without '/'")
        if name.startswith(TEMP_PREFIX):
            raise StoreNameError(f"adapter name {name!r} uses the reserved prefix {TEMP_PREFIX!r}")
        if len((TEMP_PREFIX + name).encode()) > NAME_MAX:
            raise StoreNameError(f"adapter name {name!r} is longer than {NAME_MAX - len(TEMP_PREFIX)} bytes")

    def _new_fs(self) -> tuple[littlefs.LittleFS, PartitionContext]:
        ctx = PartitionContext(self.partition, self.block_size)
        align = self.partition.write_align
        cache = max(align, 256) if self.block_size % max(align, 256) == 0 else self.block_size
        lookahead = max(8, -(-self.block_count // 64) * 8)  # one bit per block, multiple of 8 bytes
        fs = littlefs.LittleFS(
            context=ctx, mount=False, block_size=self.block_size, block_count=self.block_count,
            read_size=align, prog_size=align, cache_size=cache, lookahead_size=lookahead,
            block_cycles=self.block_cycles)
        return fs, ctx

    def _discard(self) -> None:
        """Drop the file-system object without touching flash (after a cut it is stale)."""
        self._fs = None
        self._ctx = None

    def _op(self, what: str, fn: Callable[[littlefs.LittleFS], T]) -> T:
        if self._fs is None or self._ctx is None:
            raise StoreError(f"{what}: the store is not mounted (call mount() after power_on())")
        fs, ctx = self._fs, self._ctx
        try:
            return self._call(ctx, lambda: fn(fs), what)
        except (PowerLoss, StoreIOError, StoreCorruptError):
            # RAM state may disagree with flash: drop it. After an error (not a cut) try to
            # carry on from what is on flash.
            self._discard()
            if ctx.lost is None and self.partition.flash.powered:
                try:
                    self.mount()
                except (StoreError, FlashError):
                    self._discard()
            raise

    def _call(self, ctx: PartitionContext, fn: Callable[[], T], what: str,
              fatal: type[StoreError] = StoreIOError) -> T:
        """Run one littlefs call and turn what the callbacks saw into our errors."""
        ctx.reset_errors()
        error: Exception | None = None
        result = None
        try:
            result = fn()
        except LittleFSError as exc:
            error = exc
        except (RuntimeError, StoreIOError) as exc:  # short write from file_write, short read
            error = exc
        if ctx.lost is not None:
            self._discard()
            raise PowerLoss(f"store on {self.partition.name!r}: power lost during {what}; "
                            "power_on() the flash and mount() again") from ctx.lost
        if ctx.bugs:
            self._discard()  # littlefs's RAM state followed a failed callback: not trusted
            raise ctx.bugs[0]
        if ctx.read_errors:
            raise StoreIOError(f"{what}: flash read failed: {ctx.read_errors[0]}") from ctx.read_errors[0]
        if ctx.io_errors:
            raise StoreIOError(f"{what}: flash operation failed: {ctx.io_errors[0]}") from ctx.io_errors[0]
        if error is not None:
            raise _map_error(error, what, fatal) from error
        return result  # type: ignore[return-value]


def _map_error(error: Exception, what: str, fatal: type[StoreError]) -> StoreError:
    if isinstance(error, StoreError):
        return error
    if isinstance(error, LittleFSError):
        code = error.code
        if code == LittleFSError.Error.LFS_ERR_NOENT:
            return StoreNotFoundError(f"{what}: no such adapter")
        if code == LittleFSError.Error.LFS_ERR_NOSPC:
            return StoreFullError(f"{what}: no space left in the store")
        if code == LittleFSError.Error.LFS_ERR_NAMETOOLONG:
            return StoreNameError(f"{what}: name too long")
        if code == LittleFSError.Error.LFS_ERR_CORRUPT:
            return StoreCorruptError(f"{what}: littlefs reports corruption ({error})")
        if code == LittleFSError.Error.LFS_ERR_IO:
            return StoreIOError(f"{what}: littlefs reports an I/O error ({error})")
        return fatal(f"{what}: {error}")
    return StoreIOError(f"{what}: {error}")


__all__ = ["AdapterStore", "PartitionContext", "TEMP_PREFIX"]
