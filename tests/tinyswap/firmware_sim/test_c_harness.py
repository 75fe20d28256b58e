"""The bundle's device C code (tinyswap_fw.c) run under the simulator, against the Python swap path.

The C code is built once per content (tinyswap.export.fw_host caches the library) and driven
through cffi with a port whose flash callbacks go to firmware_sim partitions and whose crypto
is hashlib / cryptography. Checked: every digits adapter installs into every slot byte for byte
as the Python swap manager writes it, and the reference interpreter's outputs agree; gate values;
each kind of bad package gives the C status of the Python exception class; the record (its
documented byte layout, test-then-confirm, anti-rollback across reboots); and power cuts at
every flash operation of an install and its commit leave a device that boots consistent.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tinyswap.export.fw_host import (
    FwHost,
    FwStatus,
    Geometry,
    Record,
    RecordState,
    SlotEntry,
    compiler,
    content_of,
    decode_record,
    encode_record,
    record_bytes,
)
from tinyswap.firmware_sim.flash import FaultPlan, FlashDevice, FlashGeometry, Partition
from tinyswap.firmware_sim.power import CutPoint
from tinyswap.image import RamImage
from tinyswap.interpreter import Interpreter
from tinyswap.package import (
    PackageDigestError,
    PackageFormatError,
    RollbackError,
    SealedPackageError,
    SignatureError,
    SlotLayoutError,
    MissingSlotTensorsError,
    SlotShapeError,
    UnknownKeyError,
    UnknownLayerError,
    WrongBaseModelError,
    build_package,
    key_id,
    parse_package,
    verify_package,
)
from tinyswap.slotmap import SlotMap
from tinyswap.swap import SwapManager
from tinyswap.swap.slot_bytes import SlotBytes

from tests.adapter_cases import KEY, package, sealed_package
from tests.conftest import FULL
from tests.tinyswap.firmware_sim.device_cases import KEYRING, bundle_for, packages_for

pytestmark = pytest.mark.skipif(compiler() is None, reason="no C compiler (gcc or cc) on this host: the device C "
                                "code cannot be built, so it cannot be run under the simulator")

SECTOR = 4096
B = bundle_for(SECTOR)
SMAP = SlotMap.from_json(B.smap)
P = packages_for(SECTOR)


@dataclass
class Rig:
    """A flash part holding the model partition (model.tflite from address 0) and the record
    partition (two one-sector areas), and the C code over them."""

    flash: FlashDevice
    model: Partition
    record: Partition
    host: FwHost
    smap: SlotMap

    def image(self) -> bytes:
        return self.flash.image_bytes(0, self.smap.model_bytes)


def make_rig(smap: SlotMap, data: bytes, *, erase_value: int = 0xFF, write_align: int = 1,
             flash_image: bytes | None = None, keys=None) -> Rig:
    model_sectors = -(-smap.model_bytes // SECTOR)
    g = FlashGeometry.uniform(SECTOR, model_sectors + 2, erase_value=erase_value, write_align=write_align,
                              name="c-rig")
    if flash_image is None:
        raw = bytearray([erase_value]) * g.size
        raw[: len(data)] = data
        flash_image = bytes(raw)
    flash = FlashDevice(g, image=flash_image)
    model = Partition(flash, 0, model_sectors * SECTOR, "model")
    record = Partition(flash, model.size, 2 * SECTOR, "record")
    host = FwHost(smap, model, Geometry(model.size, SECTOR, write_align, erase_value), record,
                  Geometry(record.size, SECTOR, write_align, erase_value),
                  [KEY.public_key()] if keys is None else keys)
    assert host.init_status == FwStatus.TSFW_OK
    return Rig(flash, model, record, host, smap)


def booted(smap: SlotMap, data: bytes, **kw) -> Rig:
    rig = make_rig(smap, data, **kw)
    assert rig.host.format() == FwStatus.TSFW_OK
    status, report = rig.host.boot()
    assert status == FwStatus.TSFW_OK and report is not None and not report.record_found
    return rig


def reboot(rig: Rig) -> Rig:
    """A new C context over a copy of the flash (what survives a reset)."""
    g = rig.flash.geometry
    new = make_rig(rig.smap, b"", erase_value=g.erase_value, write_align=g.write_align,
                   flash_image=rig.flash.image_bytes())
    return new


def python_image(smap: SlotMap, data: bytes, pkg: bytes, slot: int) -> bytes:
    """The Python swap path's image with `pkg` in `slot` (SlotBytes is what SwapManager writes with)."""
    image = RamImage(data)
    SlotBytes(image, smap).write(slot, parse_package(pkg))
    return bytes(image.buffer)


# ------------------------------------------------------------------------------ the digits bundle

@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from tinyswap.commands.digits import prepare

    d = prepare(tmp_path_factory.mktemp("digits"))
    return d, SlotMap.from_json(d.slotmap)


@pytest.mark.parametrize("erase_value,write_align", [(0xFF, 1), (0x00, 8)])
def test_every_digits_package_installs_byte_for_byte_as_the_python_swap_manager(digits, erase_value, write_align):
    d, smap = digits
    public = d.private_key.public_key()
    for domain, pkg in d.packages.items():
        # Slot 0 through the swap manager itself (a fresh manager loads into its first free slot).
        manager = SwapManager(bytearray(d.model_bytes), smap, d.keyring)
        manager.load_adapter(pkg)
        expected = {0: bytes(manager.image.buffer), 1: python_image(smap, d.model_bytes, pkg, 1)}
        # Both slots through the manager: another adapter first (slot 0), this one next (slot 1).
        other = next(p for k, p in d.packages.items() if k != domain)
        both = SwapManager(bytearray(d.model_bytes), smap, d.keyring)
        both.load_adapter(other)
        both.load_adapter(pkg)
        rig = booted(smap, d.model_bytes, erase_value=erase_value, write_align=write_align, keys=[public])
        assert rig.host.install(other) == (FwStatus.TSFW_OK, 0) and rig.host.install(pkg) == (FwStatus.TSFW_OK, 1)
        assert rig.image() == bytes(both.image.buffer), domain
        for slot in range(smap.num_slots):
            rig = booted(smap, d.model_bytes, erase_value=erase_value, write_align=write_align, keys=[public])
            status, where = rig.host.install(pkg, slot)
            assert status == FwStatus.TSFW_OK and where == slot, (domain, slot, status)
            image = rig.image()
            s = smap.slots[slot]
            assert image[s.offset : s.offset + s.length] == expected[slot][s.offset : s.offset + s.length], domain
            assert image == expected[slot], f"{domain} in slot {slot}: the C image differs from the Python one"
            _, entry = rig.host.slot_entry(slot)
            assert entry is not None and entry.installed and entry.name == parse_package(pkg).name
            # The record's content digest is the Python swap path's (SlotBytes.remember).
            assert entry.content.hex() == SlotBytes(RamImage(d.model_bytes), smap).remember(parse_package(pkg))
            assert entry.digest == parse_package(pkg).digest


def test_the_reference_interpreter_gives_the_same_outputs_on_the_c_written_image(digits):
    d, smap = digits
    public = d.private_key.public_key()
    x = next(iter(d.images.values()))[:4]
    for domain, pkg in d.packages.items():
        manager = SwapManager(bytearray(d.model_bytes), smap, d.keyring)
        manager.load_adapter(pkg)
        name = parse_package(pkg).name
        want = manager.infer(x, adapters=name)[0]
        rig = booted(smap, d.model_bytes, keys=[public])
        status, slot = rig.host.install(pkg)  # the C picks the first empty slot: 0
        assert status == FwStatus.TSFW_OK and slot == 0
        assert rig.host.slot_of(name) == (FwStatus.TSFW_OK, 0)
        gates = [np.full((len(x), 1), rig.host.gate_value(s, 65536 if s == slot else 0)[1], np.int8)
                 for s in range(smap.num_slots)]
        got = Interpreter(model_content=rig.image()).run(x, *gates)[0]
        np.testing.assert_array_equal(got, want, err_msg=domain)


def test_gate_values_equal_the_slot_maps_quantization():
    rig = booted(SMAP, B.data)
    for slot, gate in enumerate(SMAP.gates):
        for q16 in list(range(0, 65537, 97)) + [65536, 32768, 1, 2]:
            status, value = rig.host.gate_value(slot, q16)
            assert status == FwStatus.TSFW_OK and value == gate.quantize(q16 / 65536), (slot, q16)
        # Exactly halfway between two steps: Python's round (half to even), in double precision.
        for k in range(0, 40):
            q16 = int(round((k + 0.5) * gate.scale * 65536))
            assert rig.host.gate_value(slot, q16)[1] == gate.quantize(q16 / 65536)
    assert rig.host.gate_value(0, int(SMAP.gate_max * 65536) + 1)[0] == FwStatus.TSFW_E_ARGUMENT
    assert rig.host.gate_value(SMAP.num_slots, 0)[0] == FwStatus.TSFW_E_ARGUMENT


# ------------------------------------------------------------------------------ refusals: C and Python agree

OTHER_KEY = Ed25519PrivateKey.generate()
A4 = package(B.smap, 14, "A", 4)  # valid on a device at A v3: each case breaks one thing


def _tensors(pkg: bytes):
    p = parse_package(pkg)
    return [(t.layer, t.role, np.frombuffer(bytes(p.tensor_bytes(t)), np.dtype(t.dtype)).reshape(t.shape))
            for t in p.tensors]


def resign(pkg: bytes, key=KEY, tensors=None, **meta_changes) -> bytes:
    p = parse_package(pkg)
    meta = {k: v for k, v in p.metadata.items() if k != "tensors"}
    meta.update(meta_changes)
    return build_package(meta, _tensors(pkg) if tensors is None else tensors, key)


def signed_raw(metadata: bytes, payload: bytes, version: int = 1, key=KEY) -> bytes:
    """A package around raw metadata bytes, digest and signature valid: only the parsers judge it."""
    body = b"TSAP" + struct.pack("<HI", version, len(metadata)) + metadata + struct.pack("<Q", len(payload)) + payload
    signed = body + hashlib.sha256(body).digest() + key_id(key.public_key())
    return signed + key.sign(signed)


def raw_meta(pkg: bytes) -> tuple[str, bytes]:
    p = parse_package(pkg)
    return bytes(p.metadata_bytes).decode(), bytes(p.payload)


def edit_meta(pkg: bytes, old: str, new: str) -> bytes:
    meta, payload = raw_meta(pkg)
    assert old in meta, old
    return signed_raw(meta.replace(old, new, 1).encode(), payload)


def with_extra(pkg: bytes, extra: str) -> bytes:
    meta, payload = raw_meta(pkg)
    return signed_raw((meta[:-1] + "," + extra + "}").encode(), payload)


def _corrupt(pkg: bytes) -> bytes:
    bad = bytearray(pkg)
    bad[len(bad) // 2] ^= 0x40
    return bytes(bad)


def _version(pkg: bytes, version: int) -> bytes:
    return pkg[:4] + struct.pack("<H", version) + pkg[6:]


CASES = {
    # the REJECTIONS of test_device.py that a device's install code judges
    "corrupt": lambda: _corrupt(A4),
    "truncated": lambda: A4[:-10],
    "trailing-bytes": lambda: A4 + b"\0",
    "wrong-base-model": lambda: package(bundle_for(8192).smap, 14, "A", 4),
    "unsigned": lambda: A4[:-64] + bytes(64),
    "unknown-key": lambda: resign(A4, key=OTHER_KEY),
    "lower-sequence": lambda: P["A1"],
    "same-sequence-other-content": lambda: package(B.smap, 99, "A", 3),
    "json-too-deep": lambda: with_extra(A4, '"x":' + "[" * 100 + "]" * 100),
    "json-integer-too-long": lambda: with_extra(A4, '"x":' + "9" * 70),
    "sequence-over-63-bits": lambda: edit_meta(A4, '"sequence":4', '"sequence":9223372036854775808'),
    # more of the format
    "too-short": lambda: A4[:100],
    "bad-magic": lambda: b"TSAQ" + A4[4:],
    "format-version-3": lambda: _version(A4, 3),
    "encrypted-version-2": lambda: sealed_package(A4, X25519PrivateKey.generate().public_key()),
    "encryption-in-version-1": lambda: with_extra(A4, '"encryption":null'),
    "metadata-not-utf8": lambda: signed_raw(raw_meta(A4)[0].encode().replace(b'"kind":"lora"', b'"kind":"lo\xffra"'),
                                            raw_meta(A4)[1]),
    "metadata-not-json": lambda: with_extra(A4, '"x":[1,]'),
    "metadata-not-an-object": lambda: signed_raw(b"[]", b""),
    "sequence-is-a-float": lambda: edit_meta(A4, '"sequence":4', '"sequence":4.0'),
    "sequence-is-a-boolean": lambda: edit_meta(A4, '"sequence":4', '"sequence":true'),
    "sequence-negative": lambda: edit_meta(A4, '"sequence":4', '"sequence":-4'),
    "name-missing": lambda: edit_meta(A4, '"name":"A"', '"nome":"A"'),
    "tag-not-a-string": lambda: edit_meta(A4, '"tags":{}', '"tags":{"tenant":7}'),
    "tags-a-list": lambda: edit_meta(A4, '"tags":{}', '"tags":[]'),
    "tensor-gap": lambda: edit_meta(A4, '"offset":32', '"offset":33'),
    "tensor-length-off": lambda: edit_meta(A4, '"length":32', '"length":31'),
    "tensor-dtype-float32": lambda: edit_meta(A4, '"dtype":"int8"', '"dtype":"float32"'),
    "tensor-shape-negative": lambda: edit_meta(A4, '"shape":[4]', '"shape":[-4]'),
    "control-character-in-a-string": lambda: edit_meta(A4, '"kind":"lora"', '"kind":"lo\tra"'),
    # the slot layout and anti-rollback
    "unknown-layer": lambda: resign(A4, tensors=_tensors(A4) + [("nope", "A", np.zeros((2,), np.int8))]),
    "unknown-role": lambda: resign(A4, tensors=[("dw1", "Z", a) if (l, r) == ("dw1", "D") else (l, r, a)
                                                for l, r, a in _tensors(A4)]),
    "missing-tensor": lambda: resign(A4, tensors=_tensors(A4)[:-1]),
    "tensor-twice": lambda: resign(A4, tensors=_tensors(A4) + _tensors(A4)[:1]),
    "shape-differs": lambda: resign(A4, tensors=[(l, r, a.reshape(-1)) for l, r, a in _tensors(A4)]),
    "dtype-differs": lambda: resign(A4, tensors=[(l, r, a.view(np.int8)) if a.dtype == np.int32 else (l, r, a)
                                                 for l, r, a in _tensors(A4)]),
}

EXPECTED = {
    PackageFormatError: FwStatus.TSFW_E_FORMAT, PackageDigestError: FwStatus.TSFW_E_DIGEST,
    UnknownKeyError: FwStatus.TSFW_E_UNKNOWN_KEY, SignatureError: FwStatus.TSFW_E_SIGNATURE,
    WrongBaseModelError: FwStatus.TSFW_E_WRONG_BASE, SlotLayoutError: FwStatus.TSFW_E_SLOT_LAYOUT,
    UnknownLayerError: FwStatus.TSFW_E_UNKNOWN_LAYER, MissingSlotTensorsError: FwStatus.TSFW_E_MISSING_TENSORS,
    SlotShapeError: FwStatus.TSFW_E_SHAPE, RollbackError: FwStatus.TSFW_E_ROLLBACK,
    SealedPackageError: FwStatus.TSFW_E_UNSUPPORTED_VERSION,
}


def python_verdict(pkg: bytes, last: dict[str, int]) -> type[Exception] | None:
    """The Python parser and verifier on a device at `last`; a sealed package cannot be written."""
    try:
        p = parse_package(pkg)
        verify_package(p, KEYRING, SMAP.base_digest, SMAP.layout_dicts(), last)
        p.tensor_views  # noqa: B018 - a version-2 package has no tensor bytes to write
    except Exception as exc:  # the class is the verdict
        return type(exc)
    return None


@pytest.fixture(scope="module")
def at_a3():
    """A C device at A v3 (so A v1 and another A v3 are rollbacks) and its flash before the cases."""
    rig = booted(SMAP, B.data)
    assert rig.host.install(package(B.smap, 13, "A", 3), 0)[0] == FwStatus.TSFW_OK
    return rig


@pytest.mark.parametrize("case", list(CASES))
def test_each_bad_package_gets_the_c_status_of_the_python_exception(at_a3, case):
    bad = CASES[case]()
    verdict = python_verdict(bad, {"A": 3})
    assert verdict is not None, f"{case}: the Python path accepts it"
    before = at_a3.flash.image_bytes()
    ops = at_a3.host.flash_ops
    assert at_a3.host.verify(bad)[0] == EXPECTED[verdict], case
    status, _ = at_a3.host.install(bad, 1)
    assert status == EXPECTED[verdict], f"{case}: Python {verdict.__name__}, C {status.name}"
    assert at_a3.flash.image_bytes() == before and at_a3.host.flash_ops == ops, "a refused package changed the flash"


def test_the_unbroken_package_passes_on_the_same_device(at_a3):
    rig = reboot(at_a3)
    assert rig.host.boot()[0] == FwStatus.TSFW_OK
    assert python_verdict(A4, {"A": 3}) is None
    assert rig.host.install(A4, 1) == (FwStatus.TSFW_OK, 1)


# JSON the scanner must read as Python's json does (accepted, with the same fields).
EQUIVALENT_JSON = {
    "whitespace": lambda m: m.replace(",", " ,\n\t").replace(":", " : \r"),
    "escaped-layer-name": lambda m: m.replace('"layer":"dw1"', '"layer":"\\u0064w1"'),
    "escaped-solidus-in-unknown": lambda m: m[:-1] + ',"note":"a\\/b \\"q\\" \\u00e9 \\ud83d\\ude00 \\ud800"}',
    "duplicate-key-last-wins": lambda m: '{"name":"B",' + m[1:],
    "nested-unknown-fields": lambda m: m[:-1] + ',"x":{"y":[1,-2.5e+3,true,false,null,{"z":[]}],"w":{}}}',
    "non-finite-numbers-in-unknown": lambda m: m[:-1] + ',"x":[NaN,Infinity,-Infinity]}',
    "sequence-minus-zero": lambda m: m.replace('"sequence":4', '"sequence":-0'),
    "tags-null": lambda m: m.replace('"tags":{}', '"tags":null'),
    "tags-with-null-value": lambda m: m.replace('"tags":{}', '"tags":{"tenant":null,"task":"t"}'),
    "utf8-in-unknown": lambda m: m[:-1] + ',"note":"h\u00e9llo \u4e16\u754c"}',
    "depth-64": lambda m: m[:-1] + ',"x":' + "[" * 63 + "]" * 63 + "}",
}


@pytest.mark.parametrize("case", list(EQUIVALENT_JSON))
def test_json_the_python_parser_accepts_the_c_scanner_accepts_alike(case):
    meta, payload = raw_meta(A4)
    pkg = signed_raw(EQUIVALENT_JSON[case](meta).encode(), payload)
    rig = booted(SMAP, B.data)
    assert python_verdict(pkg, {}) is None
    status, info = rig.host.verify(pkg)
    assert status == FwStatus.TSFW_OK, status
    p = parse_package(pkg)
    assert (info.name, info.version, info.sequence) == (p.name, p.metadata["version"], p.sequence)


def test_the_device_bounds_name_and_version_to_31_bytes():
    """The record keeps names in 32-byte fields: a longer name is refused before anything is written."""
    rig = booted(SMAP, B.data)
    assert rig.host.install(resign(A4, name="n" * 31), 0)[0] == FwStatus.TSFW_OK
    assert rig.host.verify(resign(A4, name="n" * 32))[0] == FwStatus.TSFW_E_FORMAT
    assert rig.host.verify(resign(A4, name="m", version="v" * 32))[0] == FwStatus.TSFW_E_FORMAT


# ------------------------------------------------------------------------------ the record

def test_the_record_is_the_documented_bytes():
    rig = booted(SMAP, B.data)
    assert rig.host.install(P["A1"], 1) == (FwStatus.TSFW_OK, 1)
    raw = rig.record.image_bytes()
    size = record_bytes(SMAP.num_slots)
    areas = [decode_record(raw[a * SECTOR : a * SECTOR + size], SMAP.num_slots) for a in range(2)]
    rec = max((r for r in areas if r is not None), key=lambda r: r.sequence)
    assert encode_record(rec) == raw[areas.index(rec) * SECTOR :][:size]  # the encoder writes the same bytes
    a1 = parse_package(P["A1"])
    entry = rec.current.slots[1]
    assert (entry.installed, entry.name, entry.version, entry.sequence) == (True, "A", a1.metadata["version"], 1)
    assert entry.digest == a1.digest and entry.content == content_of(SMAP, rig.image(), 1)
    assert not rec.current.slots[0].installed and rec.current.names == {"A": 1}
    assert not rec.trial and rec.confirmed == rec.current
    assert rig.host.slot_entry(1)[1] == entry


def test_a_record_written_by_python_is_read_by_the_c_boot():
    """The offline path's initial record: slot 1 recorded with the content it holds survives boot."""
    image = python_image(SMAP, B.data, P["B1"], 1)
    rig = make_rig(SMAP, image)
    zero = hashlib.sha256(bytes(sum(t.length for t in SMAP.layout))).digest()
    state = RecordState((SlotEntry(False, content=zero), SlotEntry(True, 21, bytes(32), content_of(SMAP, image, 1),
                                                                    "B", "1.1")), {"B": 1})
    rig.record.erase(0, SECTOR)
    rig.record.program(0, encode_record(Record(7, False, state, state)))
    status, report = rig.host.boot()
    assert status == FwStatus.TSFW_OK and report.record_found and report.repaired_slots == ()
    assert report.record_sequence == 7 and rig.image() == image
    assert rig.host.slot_of("B") == (FwStatus.TSFW_OK, 1)
    assert rig.host.install(P["B1"])[0] == FwStatus.TSFW_E_ROLLBACK  # B's sequence 1 is recorded


def test_trial_reverts_at_boot_and_confirm_makes_it_permanent():
    rig = booted(SMAP, B.data)
    assert rig.host.install(P["A1"], 0) == (FwStatus.TSFW_OK, 0)
    permanent = rig.image()
    assert rig.host.install(P["B1"], 1, trial=True) == (FwStatus.TSFW_OK, 1)
    assert rig.host.install(P["A2"], 0, trial=True) == (FwStatus.TSFW_OK, 0)  # overwrites the confirmed A1
    rig = reboot(rig)
    status, report = rig.host.boot()
    assert status == FwStatus.TSFW_OK and report.reverted and report.repaired_slots == (0, 1)
    # Both trial slots are blank again (A1's bytes were overwritten: the application re-installs them).
    assert rig.image() == B.data and SMAP.damaged_frames(rig.image()) == []
    assert rig.host.slot_of("A")[0] == FwStatus.TSFW_E_NOT_FOUND
    assert rig.host.install(P["A1"], 0)[0] == FwStatus.TSFW_E_ROLLBACK  # A v1 stays accepted (confirmed)
    assert rig.host.install(P["A2"], 0) == (FwStatus.TSFW_OK, 0)  # A v2 was reverted: allowed again
    assert rig.host.install(P["B1"], 1, trial=True) == (FwStatus.TSFW_OK, 1)
    assert rig.host.confirm() == FwStatus.TSFW_OK and rig.host.confirm() == FwStatus.TSFW_OK
    done = rig.image()
    assert done != permanent
    for _ in range(2):
        rig = reboot(rig)
        status, report = rig.host.boot()
        assert status == FwStatus.TSFW_OK and not report.reverted and report.repaired_slots == ()
        assert rig.image() == done and rig.host.slot_of("B") == (FwStatus.TSFW_OK, 1)


def test_slot_choice_rollback_and_clearing():
    rig = booted(SMAP, B.data)
    assert rig.host.install(P["A1"]) == (FwStatus.TSFW_OK, 0)
    assert rig.host.install(P["A1"])[0] == FwStatus.TSFW_E_ROLLBACK
    assert rig.host.install(P["B1"]) == (FwStatus.TSFW_OK, 1)
    assert rig.host.install(P["C1"])[0] == FwStatus.TSFW_E_NO_SLOT  # every slot holds an adapter
    assert rig.host.install(P["C1"], 0) == (FwStatus.TSFW_OK, 0)  # the caller names the slot to evict
    assert rig.host.install(P["A2"], 5)[0] == FwStatus.TSFW_E_ARGUMENT
    assert rig.host.clear_slot(1) == FwStatus.TSFW_OK and rig.host.slot_of("B")[0] == FwStatus.TSFW_E_NOT_FOUND
    s = SMAP.slots[1]
    assert rig.image()[s.offset : s.offset + s.length] == B.data[s.offset : s.offset + s.length]
    rig = reboot(rig)
    assert rig.host.boot()[0] == FwStatus.TSFW_OK
    assert rig.host.install(P["B1"])[0] == FwStatus.TSFW_E_ROLLBACK  # the sequence outlives the slot
    assert rig.host.slot_of("C") == (FwStatus.TSFW_OK, 0)


def test_calls_before_boot_and_bad_geometry_are_refused():
    rig = make_rig(SMAP, B.data)
    assert rig.host.install(P["A1"])[0] == FwStatus.TSFW_E_STATE
    assert rig.host.verify(P["A1"])[0] == FwStatus.TSFW_E_STATE
    b16 = bundle_for(16)
    smap16 = SlotMap.from_json(b16.smap)
    g = FlashGeometry.uniform(SECTOR, 12, name="c-rig")
    flash = FlashDevice(g)
    host = FwHost(smap16, Partition(flash, 0, 10 * SECTOR, "model"), Geometry(10 * SECTOR, SECTOR),
                  Partition(flash, 10 * SECTOR, 2 * SECTOR, "record"), Geometry(2 * SECTOR, SECTOR), [KEY.public_key()])
    assert host.init_status == FwStatus.TSFW_E_GEOMETRY  # 16-byte slots in 4 KB sectors: an erase would hit the base


# ------------------------------------------------------------------------------ power cuts

def _clean_ops(slot: int) -> int:
    rig = booted(SMAP, B.data)
    assert rig.host.install(P["A1"], 0)[0] == FwStatus.TSFW_OK
    ops = rig.host.flash_ops
    assert rig.host.install(P["B1"], slot)[0] == FwStatus.TSFW_OK
    return rig.host.flash_ops - ops


def _check_after_cut(rig: Rig, slot: int, before: bytes) -> str:
    """Boot, then: the record agrees with the bytes of every slot, each slot is old, new or blank,
    and the model parses. Returns which state the target slot is in."""
    status, report = rig.host.boot()
    assert status == FwStatus.TSFW_OK, status
    image = rig.image()
    SMAP.check_model(image)  # frames intact, base untouched
    new = python_image(SMAP, before, P["B1"], slot)
    s = SMAP.slots[slot]
    states = {"old": before, "new": new}
    zero_slot = bytearray(before)
    zero_slot[s.offset : s.offset + s.length] = s.template()
    states["blank"] = bytes(zero_slot)
    found = [k for k, v in states.items() if image == v]
    assert found, "the image is neither the old, the new nor the old with the slot blank"
    for n in range(SMAP.num_slots):
        _, entry = rig.host.slot_entry(n)
        assert entry.content == content_of(SMAP, image, n), f"slot {n}: the record does not describe its bytes"
    _, entry = rig.host.slot_entry(slot)
    if found[0] == "new":
        assert entry.installed and entry.name == "B"
    if entry.installed and entry.name == "B":
        assert found[0] == "new"
    return found[0]


def _sweep(slot: int, cuts, when: CutPoint) -> set[str]:
    seen = set()
    for cut in cuts:
        rig = booted(SMAP, B.data)
        assert rig.host.install(P["A1"], 0)[0] == FwStatus.TSFW_OK
        before = rig.image()
        rig.flash.arm(FaultPlan.cut(cut, when))
        status, _ = rig.host.install(P["B1"], slot)
        assert status in (FwStatus.TSFW_E_FLASH, FwStatus.TSFW_OK), status
        assert status == FwStatus.TSFW_OK or rig.host.callback_errors, "a failed call without a flash error"
        after = reboot(rig)
        seen.add(_check_after_cut(after, slot, before))
        # The device keeps working: the install can be redone (or is refused as already done).
        again, _ = after.host.install(P["B1"], slot)
        assert again in (FwStatus.TSFW_OK, FwStatus.TSFW_E_ROLLBACK)
    return seen


@pytest.mark.parametrize("slot", [1, 0])  # an empty slot, and the slot of the confirmed A1
def test_power_cuts_during_an_install_leave_each_slot_old_new_or_blank(slot):
    total = _clean_ops(slot)
    cuts = range(1, total + 2) if FULL else sorted({1, 2, total // 2, total - 1, total, total + 1})
    seen = _sweep(slot, cuts, CutPoint.BEFORE)
    assert "new" in seen and ("old" in seen or "blank" in seen)


def test_after_prepare_the_install_commit_erases_no_record_sector_until_the_next_boot():
    rig = booted(SMAP, B.data)
    assert rig.host.install(P["A1"], 0)[0] == FwStatus.TSFW_OK
    erases = rig.flash.snapshot().sector_erases
    record_sectors = range(rig.record.first_sector, rig.record.first_sector + len(rig.record.sectors))
    assert rig.host.prepare() == FwStatus.TSFW_OK  # the idle step: one area (one sector) erased
    after_prepare = rig.flash.snapshot().sector_erases
    assert sum(after_prepare[s] - erases[s] for s in record_sectors) == 1
    assert rig.host.prepare() == FwStatus.TSFW_OK  # already erased: nothing to do
    assert rig.flash.snapshot().sector_erases == after_prepare
    assert rig.host.install(P["B1"], 1)[0] == FwStatus.TSFW_OK
    after_install = rig.flash.snapshot().sector_erases
    assert all(after_install[s] == after_prepare[s] for s in record_sectors)  # the commit only programmed
    status, report = reboot(rig).host.boot()
    assert status == FwStatus.TSFW_OK and report.record_found and not report.repaired_slots
    # Without prepare (here: a fresh boot) the commit erases its area first, as it always did.
    again = reboot(rig)
    assert again.host.boot()[0] == FwStatus.TSFW_OK
    before = again.flash.snapshot().sector_erases
    assert again.host.install(P["C1"], 1)[0] == FwStatus.TSFW_OK
    assert sum(again.flash.snapshot().sector_erases[s] - before[s] for s in record_sectors) == 1


@pytest.mark.parametrize("when", [CutPoint.BEFORE, CutPoint.AFTER, CutPoint.TORN])
def test_a_cut_during_prepare_leaves_the_record_and_the_next_install_lands(when):
    rig = booted(SMAP, B.data)
    assert rig.host.install(P["A1"], 0)[0] == FwStatus.TSFW_OK
    before = rig.image()
    rig.flash.arm(FaultPlan.cut(1, when))  # prepare's one erase
    assert rig.host.prepare() == FwStatus.TSFW_E_FLASH
    after = reboot(rig)
    status, report = after.host.boot()
    assert status == FwStatus.TSFW_OK and report.record_found and not report.repaired_slots
    assert after.image() == before and after.host.slot_entry(0)[1].name == "A"
    assert after.host.install(P["B1"], 1)[0] == FwStatus.TSFW_OK
    assert after.image() == python_image(SMAP, before, P["B1"], 1)


def _boot_sweep(slot: int, install_cut: int, boot_cuts) -> set[str]:
    """A cut during the install, then a second one during the boot that repairs it."""
    seen = set()
    for cut in boot_cuts:
        rig = booted(SMAP, B.data)
        assert rig.host.install(P["A1"], 0)[0] == FwStatus.TSFW_OK
        before = rig.image()
        rig.flash.arm(FaultPlan.cut(install_cut))
        assert rig.host.install(P["B1"], slot)[0] == FwStatus.TSFW_E_FLASH
        second = reboot(rig)
        second.flash.arm(FaultPlan.cut(cut))
        status, _ = second.host.boot()
        assert status in (FwStatus.TSFW_OK, FwStatus.TSFW_E_FLASH)
        seen.add(_check_after_cut(reboot(second), slot, before))
    return seen


def _repair_ops(slot: int, install_cut: int) -> int:
    rig = booted(SMAP, B.data)
    assert rig.host.install(P["A1"], 0)[0] == FwStatus.TSFW_OK
    rig.flash.arm(FaultPlan.cut(install_cut))
    rig.host.install(P["B1"], slot)
    second = reboot(rig)
    assert second.host.boot()[0] == FwStatus.TSFW_OK
    return second.host.flash_ops


@pytest.mark.parametrize("slot", [1, 0])
def test_power_cuts_during_the_boot_that_repairs_a_cut_install(slot):
    install_cut = 5  # inside the slot's program: boot must rewrite it blank
    total = _repair_ops(slot, install_cut)
    assert total > 0
    cuts = range(1, total + 2) if FULL else sorted({1, total // 2, total, total + 1})
    assert _boot_sweep(slot, install_cut, cuts) <= {"old", "blank"}


@pytest.mark.slow
@pytest.mark.parametrize("when", [CutPoint.BEFORE, CutPoint.AFTER, CutPoint.TORN])
@pytest.mark.parametrize("slot", [1, 0])
def test_power_cuts_at_every_flash_operation(slot, when):
    total = _clean_ops(slot)
    _sweep(slot, range(1, total + 2), when)


# ------------------------------------------------------------------------------ the JSON scanner, fuzzed

_ALPHABET = '{}[]:,"\\ 0123456789-+.eEtrufalsnADUZ\t\n\u00e9'


@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 2), st.sampled_from(_ALPHABET)),
                      min_size=1, max_size=3))
@settings(max_examples=400 if FULL else 60)
def test_mutated_metadata_gets_the_same_verdict_from_both_parsers(at_a3, edits):
    """Random edits of the metadata text, signed validly: the C scanner and Python's json agree
    on every one (accepted, or the same refusal)."""
    meta, payload = raw_meta(A4)
    for pos, op, ch in edits:
        pos %= len(meta) + 1
        meta = meta[:pos] + ch + meta[pos:] if op == 0 else meta[:pos] + meta[pos + 1:] if op == 1 else \
            meta[:pos] + ch + meta[pos + 1:]
    pkg = signed_raw(meta.encode(), payload)
    verdict = python_verdict(pkg, {"A": 3})
    status, _ = at_a3.host.verify(pkg)
    assert status == (FwStatus.TSFW_OK if verdict is None else EXPECTED[verdict]), (meta, verdict)

