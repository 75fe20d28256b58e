"""The bundle's device C code (`tinyswap_fw.c` + the bundle's `tinyswap_layout.c`) run on the host.

Why: the C install path must do exactly what the Python swap path does, and the only honest way
to know is to run the very sources a device compiles against the same packages and compare the
bytes. The sources are built with the system C compiler into a shared library (cached in the
temp directory, keyed by a hash of every source and flag) and loaded with cffi in ABI mode, so
no Python headers are needed. The port's flash callbacks go to any object with
`read(offset, length) -> bytes`, `erase(offset, length)` and `program(offset, data)` (a
`tinyswap.firmware_sim.flash.Partition`, or the in-memory `MemoryArea` here); SHA-256 and
Ed25519 come from hashlib and `cryptography`.

`apply_offline` is `tinyswap fw apply`: one package into one slot of a model image, through the
C code; the result equals the Python swap manager's image byte for byte.

This module knows no simulator (the compiler layer may not): the tests hand it partitions.
"""

from __future__ import annotations

import enum
import hashlib
import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tinyswap.errors import TinySwapError
from tinyswap.export.firmware import layout_sources, static_source
from tinyswap.slotmap import SlotMap


class FwStatus(enum.IntEnum):
    """`tsfw_status_t` of tinyswap_fw.h (a test checks the two agree, name and value)."""

    TSFW_OK = 0
    TSFW_E_FORMAT = 1
    TSFW_E_DIGEST = 2
    TSFW_E_UNKNOWN_KEY = 3
    TSFW_E_SIGNATURE = 4
    TSFW_E_WRONG_BASE = 5
    TSFW_E_SLOT_LAYOUT = 6
    TSFW_E_UNKNOWN_LAYER = 7
    TSFW_E_MISSING_TENSORS = 8
    TSFW_E_SHAPE = 9
    TSFW_E_ROLLBACK = 10
    TSFW_E_UNSUPPORTED_VERSION = 11
    TSFW_E_FLASH = 12
    TSFW_E_VERIFY = 13
    TSFW_E_NO_SLOT = 14
    TSFW_E_NAMES_FULL = 15
    TSFW_E_ARGUMENT = 16
    TSFW_E_WORKSPACE = 17
    TSFW_E_GEOMETRY = 18
    TSFW_E_CRYPTO = 19
    TSFW_E_STATE = 20
    TSFW_E_NOT_FOUND = 21


class FirmwareBuildError(TinySwapError):
    """The device C code could not be built on this host (no C compiler, or it failed)."""


class FwError(TinySwapError):
    """The device C code refused or failed; `status` says which way."""

    def __init__(self, status: FwStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


MAX_NAMES = 8  # TSFW_MAX_NAMES
NAME_BYTES = 32
CHUNK_BYTES = 256
ANY_SLOT = -1
INSTALL_TRIAL = 1
CFLAGS = ("-std=c99", "-O2", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror", "-pedantic")
#: Added by `build_library(sanitize=True)`: AddressSanitizer and UndefinedBehaviorSanitizer, every
#: finding fatal. The library then needs the sanitizer runtimes preloaded (`sanitizer_preload`).
SANITIZE_FLAGS = ("-g", "-O1", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=all")

_CDEF = """
typedef int (*tsfw_read_fn)(void *ctx, uint32_t offset, void *buf, uint32_t len);
typedef int (*tsfw_erase_fn)(void *ctx, uint32_t offset, uint32_t len);
typedef int (*tsfw_program_fn)(void *ctx, uint32_t offset, const void *buf, uint32_t len);
typedef struct tsfw_flash_area {
    tsfw_read_fn read; tsfw_erase_fn erase; tsfw_program_fn program;
    uint32_t size; uint32_t sector_size; uint32_t program_unit; uint8_t erase_value;
} tsfw_flash_area_t;
typedef struct tsfw_port {
    void *ctx;
    tsfw_flash_area_t model;
    tsfw_flash_area_t record;
    int (*sha256_begin)(void *ctx);
    int (*sha256_update)(void *ctx, const void *data, size_t len);
    int (*sha256_finish)(void *ctx, uint8_t out[32]);
    int (*ed25519_verify)(void *ctx, const uint8_t pub[32], const uint8_t *msg, size_t len, const uint8_t sig[64]);
} tsfw_port_t;
typedef struct tsfw_slot_entry {
    uint8_t installed; uint64_t sequence; uint8_t digest[32]; uint8_t content[32]; char name[32]; char version[32];
} tsfw_slot_entry_t;
typedef struct tsfw_package_info {
    char name[32]; char version[32]; uint64_t sequence; uint8_t digest[32]; uint8_t content[32];
} tsfw_package_info_t;
typedef struct tsfw_boot_report {
    uint8_t record_found; uint8_t reverted; uint32_t repaired_slots; uint64_t record_sequence;
} tsfw_boot_report_t;
typedef struct tsfw tsfw_t;
typedef struct tsfw_layout tsfw_layout_t;
const char *tinyswap_fw_status_name(int status);
size_t tinyswap_fw_context_bytes(void);
size_t tinyswap_fw_workspace_bytes(const tsfw_layout_t *layout);
size_t tinyswap_fw_record_bytes(const tsfw_layout_t *layout);
int tinyswap_fw_init(tsfw_t *fw, const tsfw_port_t *port, const tsfw_layout_t *layout,
                     const uint8_t (*keys)[32], size_t num_keys, uint8_t *workspace, size_t workspace_len);
int tinyswap_fw_format(tsfw_t *fw);
int tinyswap_fw_boot(tsfw_t *fw, tsfw_boot_report_t *report);
int tinyswap_fw_verify(tsfw_t *fw, const uint8_t *package, size_t len, tsfw_package_info_t *info);
int tinyswap_fw_install(tsfw_t *fw, const uint8_t *package, size_t len, int slot, uint32_t flags,
                        int *out_slot, tsfw_package_info_t *info);
int tinyswap_fw_confirm(tsfw_t *fw);
int tinyswap_fw_prepare(tsfw_t *fw);
int tinyswap_fw_clear_slot(tsfw_t *fw, int slot);
int tinyswap_fw_slot_of(const tsfw_t *fw, const char *name, int *slot);
int tinyswap_fw_slot_entry(const tsfw_t *fw, int slot, tsfw_slot_entry_t *entry);
int tinyswap_fw_gate_value(const tsfw_layout_t *layout, int slot, uint32_t weight_q16, int8_t *out);
const tsfw_layout_t *tsfw_host_layout(void);
size_t tsfw_host_sizeof(int which);
"""

# Built beside the layout: the layout's address (cffi cannot take the address of an opaque
# global) and the sizes of the structs the cdef above mirrors, checked at load.
_HOST_C = """#include "tinyswap_layout.h"
const tsfw_layout_t *tsfw_host_layout(void) { return &tinyswap_layout; }
size_t tsfw_host_sizeof(int which) {
    switch (which) {
    case 0: return sizeof(tsfw_port_t);
    case 1: return sizeof(tsfw_slot_entry_t);
    case 2: return sizeof(tsfw_package_info_t);
    case 3: return sizeof(tsfw_boot_report_t);
    default: return sizeof(tsfw_flash_area_t);
    }
}
"""
_SIZED = ("tsfw_port_t", "tsfw_slot_entry_t", "tsfw_package_info_t", "tsfw_boot_report_t", "tsfw_flash_area_t")


def compiler() -> str | None:
    """The host C compiler (`CC`, else gcc, else cc), or None."""
    for name in (os.environ.get("CC"), "gcc", "cc"):
        if name and shutil.which(name):
            return name
    return None


def _ffi() -> Any:
    try:
        import cffi
    except ImportError as exc:  # a declared dependency: only a broken install lacks it
        raise FirmwareBuildError("running the device C code on the host needs the 'cffi' package "
                                 "(pip install cffi)") from exc
    ffi = cffi.FFI()
    ffi.cdef(_CDEF)
    return ffi


def sanitizer_preload() -> str:
    """LD_PRELOAD value for a process loading a `sanitize=True` library: the compiler's own
    ASan and UBSan runtimes (they must come first in a Python process that did not link them)."""
    cc = compiler()
    if cc is None:
        raise FirmwareBuildError("no C compiler found (set CC, or install gcc) to find the sanitizer runtimes")
    paths = []
    for lib in ("libasan.so", "libubsan.so"):
        found = subprocess.run([cc, f"-print-file-name={lib}"], capture_output=True, text=True).stdout.strip()
        if not found or not Path(found).is_absolute() or not Path(found).exists():
            raise FirmwareBuildError(f"{cc} has no {lib} (install the compiler's sanitizer runtimes)")
        paths.append(found)
    return ":".join(paths)


def build_library(smap: SlotMap, cache_dir: str | Path | None = None, *, sanitize: bool = False) -> Path:
    """The shared library of the static sources and `smap`'s layout, built once per content
    (and per flags: `sanitize=True` builds it with ASan and UBSan)."""
    flags = CFLAGS + (SANITIZE_FLAGS if sanitize else ())
    cc = compiler()
    if cc is None:
        raise FirmwareBuildError("no C compiler found (set CC, or install gcc) to build the device code")
    layout_h, layout_c = layout_sources(smap)
    files = {"tinyswap_fw.h": static_source("tinyswap_fw.h"), "tinyswap_fw.c": static_source("tinyswap_fw.c"),
             "tinyswap_layout.h": layout_h, "tinyswap_layout.c": layout_c, "tsfw_host.c": _HOST_C}
    h = hashlib.sha256(" ".join((cc,) + flags).encode())
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    root = Path(cache_dir) if cache_dir is not None else Path(tempfile.gettempdir()) / "tinyswap-fw-host"
    out = root / h.hexdigest()[:24]
    lib = out / "libtinyswap_fw.so"
    if lib.exists():
        return lib
    out.mkdir(parents=True, exist_ok=True)
    # Each process builds in a folder of its own and renames the result into place: parallel
    # test workers may build the same library, and none may read another's half-written file.
    with tempfile.TemporaryDirectory(dir=out) as work:
        src = Path(work)
        for name, text in files.items():
            (src / name).write_text(text, encoding="utf-8")
        tmp = src / "libtinyswap_fw.so"
        sources = [str(src / n) for n in ("tinyswap_fw.c", "tinyswap_layout.c", "tsfw_host.c")]
        proc = subprocess.run([cc, *flags, "-I", str(src), *sources, "-o", str(tmp)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise FirmwareBuildError(f"{cc} could not build the device code: {' '.join(proc.stderr.split())[:400]}")
        os.replace(tmp, lib)
    return lib


class FlashArea(Protocol):
    """What the port's flash callbacks need (a firmware_sim `Partition` has it)."""

    def read(self, offset: int, length: int) -> bytes: ...

    def erase(self, offset: int, length: int) -> None: ...

    def program(self, offset: int, data: bytes) -> None: ...


@dataclass(frozen=True)
class Geometry:
    """An area as the port describes it to the C code."""

    size: int
    sector_size: int
    program_unit: int = 1
    erase_value: int = 0xFF


class MemoryArea:
    """A flash area in host memory: erase sets whole sectors to the erase value, a program must
    land on erased units (the rules the device code must respect, checked here too)."""

    def __init__(self, geometry: Geometry, data: bytes | None = None) -> None:
        self.geometry = geometry
        self.data = bytearray([geometry.erase_value]) * geometry.size
        if data is not None:
            self.data[: len(data)] = data
        # 1: may be programmed (erased since its last program); bytes that read as erased start so.
        ev = geometry.erase_value
        self.erased = bytearray(int(b == ev) for b in self.data)

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        return bytes(self.data[offset : offset + length])

    def erase(self, offset: int, length: int) -> None:
        self._check(offset, length)
        g = self.geometry
        if offset % g.sector_size or length % g.sector_size:
            raise ValueError(f"erase [{offset}, {offset + length}) is not sector aligned")
        self.data[offset : offset + length] = bytes([g.erase_value]) * length
        self.erased[offset : offset + length] = b"\1" * length

    def program(self, offset: int, data: bytes) -> None:
        self._check(offset, len(data))
        unit = self.geometry.program_unit
        if offset % unit or len(data) % unit:
            raise ValueError(f"program at {offset} of {len(data)} bytes is not aligned to {unit}")
        if not all(self.erased[offset : offset + len(data)]):
            raise ValueError(f"program at {offset}: unerased bytes")
        self.data[offset : offset + len(data)] = data
        self.erased[offset : offset + len(data)] = bytes(len(data))

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.geometry.size:
            raise ValueError(f"[{offset}, {offset + length}) is outside the {self.geometry.size}-byte area")


@dataclass(frozen=True)
class PackageInfo:
    name: str
    version: str
    sequence: int
    digest: bytes
    content: bytes


@dataclass(frozen=True)
class SlotEntry:
    """One slot of a record (see the record layout in tinyswap_fw.h)."""

    installed: bool
    sequence: int = 0
    digest: bytes = bytes(32)
    content: bytes = bytes(32)
    name: str = ""
    version: str = ""


@dataclass(frozen=True)
class BootReport:
    record_found: bool
    reverted: bool
    repaired_slots: tuple[int, ...]
    record_sequence: int


@dataclass(frozen=True)
class RecordState:
    slots: tuple[SlotEntry, ...]
    names: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    """A decoded record (tinyswap_fw.h, "Record")."""

    sequence: int
    trial: bool
    current: RecordState
    confirmed: RecordState


_REC_HEAD = struct.Struct("<4sHHQBBBB")
_SLOT = struct.Struct("<B7xQ32s32s32s32s")
_NAME = struct.Struct("<32sQ")


def record_bytes(num_slots: int) -> int:
    return _REC_HEAD.size + 2 * (_SLOT.size * num_slots + _NAME.size * MAX_NAMES) + 32


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("utf-8", errors="surrogateescape")


def _field(text: str, what: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) >= NAME_BYTES or b"\0" in raw:
        raise ValueError(f"{what} {text!r} does not fit the record's {NAME_BYTES}-byte field")
    return raw


def encode_record(record: Record) -> bytes:
    """The record's bytes exactly as the C code commits them (unpadded)."""
    num_slots = len(record.current.slots)
    out = bytearray(_REC_HEAD.pack(b"TSFR", 1, record_bytes(num_slots), record.sequence, num_slots, MAX_NAMES,
                                   int(record.trial), 0))
    for state in (record.current, record.confirmed):
        for e in state.slots:
            out += _SLOT.pack(int(e.installed), e.sequence, e.digest, e.content, _field(e.name, "name"),
                              _field(e.version, "version"))
        names = sorted(state.names.items())
        if len(names) > MAX_NAMES:
            raise ValueError(f"{len(names)} names; the record keeps {MAX_NAMES}")
        for name, seq in names + [("", 0)] * (MAX_NAMES - len(names)):
            out += _NAME.pack(_field(name, "name"), seq)
    return bytes(out) + hashlib.sha256(out).digest()


def decode_record(data: bytes, num_slots: int) -> Record | None:
    """The record at the start of `data`, or None if it is not a valid one."""
    size = record_bytes(num_slots)
    if len(data) < size:
        return None
    magic, version, length, sequence, slots, names, flags, _ = _REC_HEAD.unpack_from(data, 0)
    if (magic, version, length, slots, names) != (b"TSFR", 1, size, num_slots, MAX_NAMES) or flags > 1:
        return None
    if hashlib.sha256(data[: size - 32]).digest() != data[size - 32 : size]:
        return None
    pos = _REC_HEAD.size
    states = []
    for _ in range(2):
        entries = []
        for _ in range(num_slots):
            state, seq, digest, content, name, version_ = _SLOT.unpack_from(data, pos)
            entries.append(SlotEntry(bool(state), seq, digest, content, _text(name), _text(version_)))
            pos += _SLOT.size
        table = {}
        for _ in range(MAX_NAMES):
            name, seq = _NAME.unpack_from(data, pos)
            pos += _NAME.size
            if name.rstrip(b"\0"):
                table[_text(name)] = seq
        states.append(RecordState(tuple(entries), table))
    return Record(sequence, bool(flags), states[0], states[1])


def raw_public_key(key: Ed25519PublicKey | bytes) -> bytes:
    if isinstance(key, bytes):
        return key
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


_LOADED: dict[Path, tuple[Any, Any]] = {}


def load_library(smap: SlotMap, cache_dir: str | Path | None = None, *, sanitize: bool = False) -> tuple[Any, Any]:
    """(ffi, lib) for `smap`'s build; loaded once per process and checked against the cdef."""
    path = build_library(smap, cache_dir, sanitize=sanitize)
    if path not in _LOADED:
        ffi = _ffi()
        lib = ffi.dlopen(str(path))
        for i, name in enumerate(_SIZED):
            if lib.tsfw_host_sizeof(i) != ffi.sizeof(name):
                raise FirmwareBuildError(f"{name}: the C compiler says {lib.tsfw_host_sizeof(i)} bytes, the host "
                                         f"declaration {ffi.sizeof(name)} (tinyswap_fw.h changed without fw_host)")
        _LOADED[path] = (ffi, lib)
    return _LOADED[path]


class FwHost:
    """One device's C install code over two flash areas (model, record) and trusted keys.

    Every call returns the C status as an `FwStatus`; a Python exception raised inside a flash
    callback (a power cut) makes the callback fail, and is kept in `callback_errors`.
    """

    def __init__(self, smap: SlotMap, model: FlashArea, model_geometry: Geometry, record: FlashArea,
                 record_geometry: Geometry, keys: Sequence[Ed25519PublicKey | bytes],
                 cache_dir: str | Path | None = None, *, sanitize: bool = False) -> None:
        self.smap = smap
        self.ffi, self.lib = load_library(smap, cache_dir, sanitize=sanitize)
        ffi = self.ffi
        self.model, self.record = model, record
        self.callback_errors: list[BaseException] = []
        self.flash_ops = 0  # erase and program calls the C code made
        self._hash: Any = None
        self._keepalive: list[Any] = []
        self._port = ffi.new("tsfw_port_t *")
        self._area(self._port.model, model, model_geometry)
        self._area(self._port.record, record, record_geometry)
        self._port.sha256_begin = self._cb("int(void *)", self._sha_begin)
        self._port.sha256_update = self._cb("int(void *, const void *, size_t)", self._sha_update)
        self._port.sha256_finish = self._cb("int(void *, uint8_t *)", self._sha_finish)
        self._port.ed25519_verify = self._cb("int(void *, const uint8_t *, const uint8_t *, size_t, const uint8_t *)",
                                             self._verify)
        raw = [raw_public_key(k) for k in keys]
        self._keys = ffi.new("uint8_t[][32]", max(1, len(raw)))
        for i, k in enumerate(raw):
            ffi.memmove(self._keys[i], k, 32)
        self.layout = self.lib.tsfw_host_layout()
        self.context_bytes = int(self.lib.tinyswap_fw_context_bytes())
        self.workspace_bytes = int(self.lib.tinyswap_fw_workspace_bytes(self.layout))
        self._ctx = ffi.new("uint8_t[]", self.context_bytes)
        self._fw = ffi.cast("tsfw_t *", self._ctx)
        self._ws = ffi.new("uint8_t[]", self.workspace_bytes)
        self.init_status = FwStatus(self.lib.tinyswap_fw_init(self._fw, self._port, self.layout, self._keys, len(raw),
                                                              self._ws, self.workspace_bytes))

    # -- port callbacks ------------------------------------------------------------------------
    def _cb(self, sig: str, fn: Any) -> Any:
        cb = self.ffi.callback(sig, fn)
        self._keepalive.append(cb)
        return cb

    def _guard(self, fn: Any, *args: Any) -> int:
        try:
            fn(*args)
            return 0
        except Exception as exc:  # a power cut or a fault: the C code sees a failed call
            self.callback_errors.append(exc)
            return 1

    def _area(self, c_area: Any, area: FlashArea, g: Geometry) -> None:
        ffi = self.ffi

        def read(_ctx: Any, offset: int, buf: Any, length: int) -> int:
            def do() -> None:
                ffi.memmove(buf, area.read(offset, length), length)
            return self._guard(do)

        def erase(_ctx: Any, offset: int, length: int) -> int:
            self.flash_ops += 1
            return self._guard(area.erase, offset, length)

        def program(_ctx: Any, offset: int, buf: Any, length: int) -> int:
            self.flash_ops += 1
            return self._guard(area.program, offset, bytes(ffi.buffer(buf, length)))

        c_area.read = self._cb("int(void *, uint32_t, void *, uint32_t)", read)
        c_area.erase = self._cb("int(void *, uint32_t, uint32_t)", erase)
        c_area.program = self._cb("int(void *, uint32_t, const void *, uint32_t)", program)
        c_area.size, c_area.sector_size = g.size, g.sector_size
        c_area.program_unit, c_area.erase_value = g.program_unit, g.erase_value

    def _sha_begin(self, _ctx: Any) -> int:
        self._hash = hashlib.sha256()
        return 0

    def _sha_update(self, _ctx: Any, data: Any, length: int) -> int:
        self._hash.update(self.ffi.buffer(data, length))
        return 0

    def _sha_finish(self, _ctx: Any, out: Any) -> int:
        self.ffi.memmove(out, self._hash.digest(), 32)
        self._hash = None
        return 0

    def _verify(self, _ctx: Any, pub: Any, msg: Any, length: int, sig: Any) -> int:
        key = Ed25519PublicKey.from_public_bytes(bytes(self.ffi.buffer(pub, 32)))
        try:
            key.verify(bytes(self.ffi.buffer(sig, 64)), bytes(self.ffi.buffer(msg, length)))
        except InvalidSignature:
            return 1
        return 0

    # -- the API -------------------------------------------------------------------------------
    def status_name(self, status: int) -> str:
        return self.ffi.string(self.lib.tinyswap_fw_status_name(status)).decode()

    def format(self) -> FwStatus:
        return FwStatus(self.lib.tinyswap_fw_format(self._fw))

    def boot(self) -> tuple[FwStatus, BootReport | None]:
        rep = self.ffi.new("tsfw_boot_report_t *")
        st = FwStatus(self.lib.tinyswap_fw_boot(self._fw, rep))
        if st != FwStatus.TSFW_OK:
            return st, None
        return st, BootReport(bool(rep.record_found), bool(rep.reverted),
                              tuple(s for s in range(self.smap.num_slots) if rep.repaired_slots >> s & 1),
                              int(rep.record_sequence))

    def _info(self, info: Any) -> PackageInfo:
        ffi = self.ffi
        return PackageInfo(ffi.string(info.name).decode(), ffi.string(info.version).decode(), int(info.sequence),
                           bytes(info.digest), bytes(info.content))

    def verify(self, package: bytes) -> tuple[FwStatus, PackageInfo | None]:
        info = self.ffi.new("tsfw_package_info_t *")
        st = FwStatus(self.lib.tinyswap_fw_verify(self._fw, package, len(package), info))
        return st, self._info(info) if st == FwStatus.TSFW_OK else None

    def install(self, package: bytes, slot: int | None = None, trial: bool = False) -> tuple[FwStatus, int | None]:
        out = self.ffi.new("int *", -1)
        st = FwStatus(self.lib.tinyswap_fw_install(self._fw, package, len(package), ANY_SLOT if slot is None else slot,
                                                   INSTALL_TRIAL if trial else 0, out, self.ffi.NULL))
        return st, int(out[0]) if st == FwStatus.TSFW_OK else None

    def confirm(self) -> FwStatus:
        return FwStatus(self.lib.tinyswap_fw_confirm(self._fw))

    def prepare(self) -> FwStatus:
        """The idle step: erase the record area the next commit programs (`tinyswap_fw_prepare`)."""
        return FwStatus(self.lib.tinyswap_fw_prepare(self._fw))

    def clear_slot(self, slot: int) -> FwStatus:
        return FwStatus(self.lib.tinyswap_fw_clear_slot(self._fw, slot))

    def slot_of(self, name: str) -> tuple[FwStatus, int | None]:
        out = self.ffi.new("int *", -1)
        st = FwStatus(self.lib.tinyswap_fw_slot_of(self._fw, name.encode(), out))
        return st, int(out[0]) if st == FwStatus.TSFW_OK else None

    def slot_entry(self, slot: int) -> tuple[FwStatus, SlotEntry | None]:
        e = self.ffi.new("tsfw_slot_entry_t *")
        st = FwStatus(self.lib.tinyswap_fw_slot_entry(self._fw, slot, e))
        if st != FwStatus.TSFW_OK:
            return st, None
        return st, SlotEntry(bool(e.installed), int(e.sequence), bytes(e.digest), bytes(e.content),
                             self.ffi.string(e.name).decode(), self.ffi.string(e.version).decode())

    def gate_value(self, slot: int, weight_q16: int) -> tuple[FwStatus, int | None]:
        out = self.ffi.new("int8_t *")
        st = FwStatus(self.lib.tinyswap_fw_gate_value(self.layout, slot, weight_q16, out))
        return st, int(out[0]) if st == FwStatus.TSFW_OK else None


def check(status: FwStatus, what: str) -> None:
    """Raise `FwError` naming the status unless it is TSFW_OK."""
    if status != FwStatus.TSFW_OK:
        raise FwError(status, f"{what}: {status.name}")


def image_geometry(smap: SlotMap) -> Geometry:
    """A sector size every slot range is aligned to (the bundle's alignment, or a divisor of it)."""
    sector = smap.alignment
    while sector > 1 and any(s.offset % sector or s.length % sector for s in smap.slots):
        sector //= 2
    size = -(-smap.model_bytes // sector) * sector
    return Geometry(size, sector, 1, 0xFF)


def content_of(smap: SlotMap, image: bytes, slot: int) -> bytes:
    """SHA-256 of a slot's tensor bytes in layout order (the record's content digest)."""
    h = hashlib.sha256()
    for t in smap.slots[slot].tensors:
        h.update(image[t.offset : t.offset + t.length])
    return h.digest()


def apply_offline(smap: SlotMap, image: bytes, package: bytes, keys: Sequence[Ed25519PublicKey | bytes],
                  slot: int) -> bytes:
    """`package` into `slot` of `image` through the bundle's C code; the new image.

    The record area starts with a record describing the image as it is (each slot with an
    intact frame recorded with its present content, so boot keeps it; a damaged one is
    rewritten blank, as on a device). There is no anti-rollback history offline. Raises
    `FwError` with the C status when the package is refused; nothing is returned then.
    """
    if len(image) != smap.model_bytes:
        raise FwError(FwStatus.TSFW_E_GEOMETRY, f"the image has {len(image)} bytes, the bundle's model "
                                                f"{smap.model_bytes}")
    g = image_geometry(smap)
    model = MemoryArea(g, image)
    size = record_bytes(smap.num_slots) + CHUNK_BYTES
    area = -(-size // 4096) * 4096
    record = MemoryArea(Geometry(2 * area, 4096, 1, 0xFF))
    zero = hashlib.sha256(bytes(sum(t.length for t in smap.layout))).digest()
    entries = []
    for s in range(smap.num_slots):
        content = content_of(smap, image, s)
        entries.append(SlotEntry(content != zero, 0, bytes(32), content))
    state = RecordState(tuple(entries))
    record.program(0, encode_record(Record(1, False, state, state)))
    host = FwHost(smap, model, g, record, record.geometry, keys)
    check(host.init_status, "the device code refused the bundle layout")
    status, _ = host.boot()
    check(status, "boot")
    status, _ = host.install(package, slot)
    check(status, f"package refused by the device code (slot {slot})")
    return bytes(model.data[: smap.model_bytes])


def header_statuses(header_text: str) -> dict[str, int]:
    """The `tsfw_status_t` enumerators of tinyswap_fw.h as name -> value."""
    body = re.search(r"typedef enum tsfw_status \{(.*?)\} tsfw_status_t;", header_text, re.S)
    if body is None:
        raise ValueError("no tsfw_status_t enum in the header")
    text = re.sub(r"/\*.*?\*/", "", body.group(1), flags=re.S)
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"(TSFW_\w+)\s*=\s*(\d+)", text)}


__all__ = ["BootReport", "FirmwareBuildError", "FlashArea", "FwError", "FwHost", "FwStatus", "Geometry",
           "MemoryArea", "PackageInfo", "Record", "RecordState", "SlotEntry", "apply_offline", "build_library",
           "check", "compiler", "content_of", "decode_record", "encode_record", "header_statuses", "image_geometry",
           "load_library", "record_bytes"]
