"""Shared by the device tests: rigs (flash geometries x bundles), packages, and the oracle checks
run after every boot.

The checks are independent of the device's own bookkeeping: slot contents are compared with
the payloads read from the package files, the slot an adapter lives in is found by comparing
bytes (`slot_holding`), gates come from `slotmap.json` (`gates_for_rows`), and the golden is
TFLite Micro on the bytes the interpreter executes (`tflm_rows`), memoized by image digest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Callable

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tinyswap.firmware_sim.device import Device
from tinyswap.firmware_sim.flash import KIB, FlashDevice, FlashGeometry, Partition
from tinyswap.firmware_sim.lfs_store import AdapterStore
from tinyswap.firmware_sim.profiles import MCU_QSPI, MCU_RAM
from tinyswap.firmware_sim.storage import SAM_INTERNAL, STM32F4_INTERNAL, W25Q128JV, StorageProfile
from tinyswap.package import Keyring, parse_package

from tests.adapter_cases import KEY, Bundle, example_bundle, gates_for_rows, outside_slots, package, plaintext_of, \
    sealed_package, slot_holding, tflm_rows

KEYRING = Keyring([KEY.public_key()])
DEVICE_KEY = X25519PrivateKey.generate()  # the X25519 key of the rigs that get encrypted packages


@dataclass(frozen=True)
class Rig:
    """One hardware configuration for the device tests.

    model_geometry(erase_value, write_align): the part holding model + metadata (+ store when
    `store_geometry` is None). `alignment`: the slot alignment the bundle is compiled with (the
    part's largest slot-holding sector size).
    """

    name: str
    alignment: int
    model_geometry: Callable[[int, int], FlashGeometry]
    model_storage: StorageProfile
    aligns: tuple[int, ...]
    separate_store: bool = False  # adapters on the profile's own second medium (mcu-qspi: SD)
    profile: Any = MCU_QSPI
    store_bytes: int = 128 * KIB
    encrypted: bool = False  # packages are encrypted for DEVICE_KEY, which the device holds
    npu: str | None = None  # an Ethos-U configuration: the bundle is the stitched NPU model (Vela)

    def bundle(self) -> Bundle:
        return bundle_for(self.alignment, self.npu)

    def device(self, bundle: Bundle, erase_value: int, write_align: int, **kw: Any) -> Device:
        if self.encrypted:
            kw.setdefault("device_keys", [DEVICE_KEY])
        if self.npu is not None:  # no host runtime has the ethos-u kernel: the manifest's arena figure
            from tinyswap.export.npu.bundle import npu_arena

            from tests.npu_cases import npu_bundle

            kw.setdefault("arena", npu_arena(npu_bundle("examples-cnn", self.npu, self.alignment)))
        kw.setdefault("model_geometry", self.model_geometry(erase_value, write_align))
        kw.setdefault("model_storage", self.model_storage)
        if not self.separate_store:
            kw.setdefault("shared_store", True)
        kw.setdefault("store_bytes", self.store_bytes)
        return Device(self.profile, bundle.data, bundle.smap, KEYRING, **kw)


RIGS: dict[str, Rig] = {
    # QSPI NOR, 4 KB sectors, store on the same part: 7 model + 2 metadata + 32 store sectors.
    "nor4k": Rig("nor4k", 4096, lambda ev, a: FlashGeometry.uniform(
        4 * KIB, 41, erase_value=ev, write_align=a, name="nor4k"), W25Q128JV, (1, 8)),
    # SAM-style internal flash: 8 KB sectors, 512 B pages, wide write units.
    "sam8k": Rig("sam8k", 8192, lambda ev, a: FlashGeometry.uniform(
        8 * KIB, 24, erase_value=ev, write_align=a, page_size=512, name="sam8k"), SAM_INTERNAL, (4, 16)),
    # STM32F4 mixed map (4x16 + 64 + 7x128 KB): slots in 16 KB sectors, metadata in 128 KB
    # sectors, the store on the uniform 128 KB tail.
    "stm32f4": Rig("stm32f4", 16384, lambda ev, a: FlashGeometry.stm32f4(
        1024 * KIB, erase_value=ev, write_align=a), STM32F4_INTERNAL, (4, 16), store_bytes=640 * KIB),
    # mcu-qspi as specified: model + metadata on QSPI NOR, adapter store on an SD card (a
    # second part on the same power supply).
    "qspi+sd": Rig("qspi+sd", 4096, lambda ev, a: FlashGeometry.uniform(
        4 * KIB, 9, erase_value=ev, write_align=a, name="qspi"), W25Q128JV, (1, 8), separate_store=True),
    # mcu-ram: model copied to PSRAM at boot, slots written in RAM, store + metadata on NOR.
    "ram-nor4k": Rig("ram-nor4k", 4096, lambda ev, a: FlashGeometry.uniform(
        4 * KIB, 41, erase_value=ev, write_align=a, name="nor4k"), W25Q128JV, (1, 8), profile=MCU_RAM),
}
# mcu-qspi with encrypted packages: the store (SD) keeps ciphertext, slots get the plaintext.
RIGS["qspi+sd-enc"] = replace(RIGS["qspi+sd"], name="qspi+sd-enc", encrypted=True)
# mcu-qspi with an Ethos-U55: the cnn's base compiled by Vela, its slots plain buffers (needs the npu extra).
RIGS["qspi+sd-npu"] = replace(RIGS["qspi+sd"], name="qspi+sd-npu", npu="ethos-u55-128")


@lru_cache(maxsize=None)
def bundle_for(alignment: int, npu: str | None = None) -> Bundle:
    if npu is None:
        return example_bundle("cnn", alignment=alignment)
    from tests.npu_cases import npu_bundle, smap_of

    stitched = npu_bundle("examples-cnn", npu, alignment).stitched
    return Bundle(stitched, smap_of(stitched))


@lru_cache(maxsize=None)
def packages_for(alignment: int, npu: str | None = None) -> dict[str, bytes]:
    """A v1, A v2 (same name, higher sequence), B and C: LoRA adapters on the cnn bundle."""
    smap = bundle_for(alignment, npu).smap
    return {"A1": package(smap, 11, "A", 1), "A2": package(smap, 12, "A", 2),
            "B1": package(smap, 21, "B", 1), "C1": package(smap, 31, "C", 1)}


@lru_cache(maxsize=None)
def encrypted_packages_for(alignment: int) -> dict[str, bytes]:
    """`packages_for(alignment)`, each encrypted for DEVICE_KEY (sealed once per process)."""
    return {k: sealed_package(v, DEVICE_KEY.public_key()) for k, v in packages_for(alignment).items()}


def packages_of(rig: str) -> dict[str, bytes]:
    """The packages a rig's scenarios install: encrypted for an encrypted rig."""
    r = RIGS[rig]
    return encrypted_packages_for(r.alignment) if r.encrypted else packages_for(r.alignment, r.npu)


def digest_of(pkg: bytes) -> str:
    return parse_package(pkg).content_digest


def inputs(rows: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-128, 128, (rows, 16, 16, 1), dtype=np.int8)


# ------------------------------------------------------------------------------ independent checks

def slot_contents(smap: dict[str, Any], image: bytes, slot: int) -> tuple[bytes, ...]:
    return tuple(bytes(image[t["offset"]:t["offset"] + t["length"]]) for t in smap["slots"][slot]["tensors"])


def package_contents(smap: dict[str, Any], pkg: bytes | None) -> tuple[bytes, ...]:
    """The slot's tensor bytes when it holds `pkg` (zeros for None), read from the package file."""
    layout = smap["slots"][0]["tensors"]
    if pkg is None:
        return tuple(bytes(t["length"]) for t in layout)
    p = parse_package(plaintext_of(pkg))
    by_key = {(t.layer, t.role): bytes(p.tensor_bytes(t)) for t in p.tensors}
    return tuple(by_key[(t["layer"], t["role"])] for t in layout)


_GOLDEN: dict[tuple[str, bytes, tuple], np.ndarray] = {}


def golden(smap: dict[str, Any], image: bytes, x: np.ndarray, slot_weights: dict[int, float]) -> np.ndarray:
    """TFLite Micro on `image` with gates from slotmap.json (memoized: many cuts share a state)."""
    key = (hashlib.sha256(image).hexdigest(), x.tobytes(), tuple(sorted(slot_weights.items())))
    if key not in _GOLDEN:
        _GOLDEN[key] = tflm_rows(image, x, gates_for_rows(smap, [slot_weights] * len(x)))
    return _GOLDEN[key]


@dataclass
class Expect:
    """What each slot may hold after a cut: the old or the new state's content (package keys or None)."""

    old: list[str | None]
    new: list[str | None]
    pkgs: dict[str, bytes] = field(default_factory=dict)


def check_device(dev: Device, smap: dict[str, Any], expect: Expect, x: np.ndarray, infer: bool = True) -> str:
    """The invariants after a boot; returns "old" or "new" (the active version of adapter A).
    `infer=False` for a model no host runtime runs (an Ethos-U bundle): the slot bytes are checked,
    not the outputs."""
    assert dev.booted
    assert not [e for e in dev.last_boot.errors if "store" in e], dev.last_boot.errors
    image = dev.model_bytes_now()
    by_digest = {digest_of(p): k for k, p in expect.pkgs.items()}
    # 1. each slot holds exactly the old or exactly the new content
    erased = dev.record.erased if dev.record is not None else ()
    for s in range(len(smap["slots"])):
        got = slot_contents(smap, image, s)
        allowed = {package_contents(smap, None if k is None else expect.pkgs[k]) for k in (expect.old[s], expect.new[s])}
        if s in erased:  # the idle step's pre-erased slot: tensors at the erase value, listed in the record
            ev = dev.flashes["model"].geometry.erase_value
            allowed = {tuple(bytes([ev]) * len(t) for t in package_contents(smap, None))}
        assert got in allowed, f"slot {s} holds neither the old ({expect.old[s]}) nor the new ({expect.new[s]}) content"
    # 2. every enabled slot holds exactly the package its committed digest names
    state = dev.manager.export_state()
    for rec in state["slots"]:
        if rec["digest"] is not None:
            key = by_digest[rec["digest"]]
            assert slot_contents(smap, image, rec["slot"]) == package_contents(smap, expect.pkgs[key]), \
                f"enabled slot {rec['slot']} differs from its committed package {key}"
            assert dev.manager.content_digest(rec["slot"]) == rec["content_sha256"]
    # 3. the store mounts and lists every package the state refers to
    stored = set(dev.store.list())
    for a in state["adapters"].values():
        assert set(a["versions"]) <= stored
    # 4. inference equals TFLite Micro for the adapter the device reports active
    active = dev.active_adapters()
    assert set(active) == {"A"}, active
    a = active["A"]
    key = by_digest[a.digest]
    slot = slot_holding(smap, image, expect.pkgs[key])
    assert slot is not None and slot == a.slot, (slot, a)
    # 5. not one byte outside the slot ranges differs from the factory model
    assert outside_slots(smap, image) == outside_slots(smap, dev.model)
    if infer:
        y = dev.infer(x)[0]
        np.testing.assert_array_equal(y, golden(smap, dev.model_bytes_now(), x, {slot: 1.0}))
    return "new" if key == "A2" else "old"


def fingerprint(dev: Device) -> tuple:
    """What must be equal for two runs to have converged to the same state."""
    st = dev.manager.export_state()
    return (repr(st["adapters"]), repr(st["last_sequence"]), repr(st["slots"]), repr(dev.status()["active"]),
            dev.trial, hashlib.sha256(dev.model_bytes_now()).hexdigest())


def fresh_store_lists(dev: Device) -> list[str]:
    """Mount the store from its raw bytes in a brand-new littlefs instance (a firmware's view)."""
    part = dev.partitions["store"]
    raw = part.image_bytes()
    g = part.geometry
    f = FlashDevice(FlashGeometry(sectors=part.sectors, erase_value=g.erase_value, write_align=g.write_align,
                                  page_size=g.page_size, managed=g.managed, name="copy"), image=raw)
    s = AdapterStore(Partition(f, 0, len(raw), "copy"))
    s.mount()
    return s.list()
