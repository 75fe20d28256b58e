"""The firmware package-parser fuzz target, run in a child process by `test_fuzz_firmware.py`.

The device C code is built with AddressSanitizer and UndefinedBehaviorSanitizer and loaded into
this process with the sanitizer runtimes preloaded. Every mutated package is copied into a
heap block of exactly its length from the C library's `malloc` (ASan's, with red zones on both
sides), so a read one byte past the package aborts the process. Three generators:

- raw: byte flips, random bytes, truncation, extension, a chunk deleted or duplicated, on a
  valid package (mostly framing and digest refusals);
- metadata: the JSON text edited (characters, deep nesting, long strings and numbers, fields
  removed, duplicated or retyped) and the package re-framed, re-digested and re-signed with the
  trusted key, so the C's JSON scanner and layout checks see it;
- table: the tensor table's entries changed (shapes, offsets, lengths, dtypes, names, counts)
  and the package re-signed.

For each case the C status must be a known one; the C may accept a package only if the Python
parser and verifier accept it too, and refuse one Python accepts only for the documented device
bound (a name or version over 31 bytes, or with a NUL). Prints one JSON line of counts.

Usage: python -m tests.sweeps.firmware_fuzz_worker CASES SEED
       python -m tests.sweeps.firmware_fuzz_worker canary 0   (must die: the C is told a block is longer than it is)
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import struct
import sys
from collections import Counter

from tinyswap.errors import TinySwapError
from tinyswap.export.fw_host import FwHost, FwStatus, Geometry, MemoryArea
from tinyswap.package import Keyring, key_id, parse_package, verify_package
from tinyswap.slotmap import SlotMap

from tests.adapter_cases import KEY, example_bundle, package

SECTOR = 4096


def frame(meta: bytes, payload: bytes, version: int = 1) -> bytes:
    """A package around `meta` and `payload`, digested and signed with the trusted key."""
    body = b"TSAP" + struct.pack("<HI", version, len(meta)) + meta + struct.pack("<Q", len(payload)) + payload
    signed = body + hashlib.sha256(body).digest() + key_id(KEY.public_key())
    return signed + KEY.sign(signed)


def split(pkg: bytes) -> tuple[bytes, bytes]:
    meta_len = struct.unpack_from("<I", pkg, 6)[0]
    meta = pkg[10 : 10 + meta_len]
    payload_len = struct.unpack_from("<Q", pkg, 10 + meta_len)[0]
    return meta, pkg[18 + meta_len : 18 + meta_len + payload_len]


def mutate_raw(rng: random.Random, pkg: bytes) -> bytes:
    data = bytearray(pkg)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if op == 0 and data:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            i = rng.randrange(len(data))
            data[i] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        elif op == 2:
            del data[rng.randrange(len(data) + 1):]
        elif op == 3:
            data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        elif op == 4 and len(data) > 8:
            i = rng.randrange(len(data) - 4)
            del data[i : i + rng.randint(1, 64)]
        elif len(data) > 8:
            i = rng.randrange(len(data) - 4)
            chunk = data[i : i + rng.randint(1, 64)]
            data[i:i] = chunk
    return bytes(data)


JSON_PIECES = ["{", "}", "[", "]", ",", ":", '"', "\\", "\\u0000", "\\ud800", "0", "-", "1e999", "9" * 70, "null",
               "true", '"x"', " ", "\n", "\x00", "\xff", "é", '"tensors"', '"name"', '"sequence"', "[" * 200]


def mutate_metadata(rng: random.Random, meta: bytes) -> bytes:
    text = meta.decode("utf-8")
    op = rng.randrange(7)
    if op == 0:  # character edits
        chars = list(text)
        for _ in range(rng.randint(1, 6)):
            i = rng.randrange(len(chars) + 1)
            piece = rng.choice(JSON_PIECES)
            if rng.random() < 0.5 and chars:
                chars[min(i, len(chars) - 1)] = piece
            else:
                chars.insert(i, piece)
        return "".join(chars).encode("utf-8", "surrogatepass")
    doc = json.loads(text)
    if op == 1:  # deep nesting in a field
        depth = rng.choice([10, 63, 64, 65, 300, 5000])
        doc[rng.choice(["tags", "performance", "name", "extra"])] = json.loads("[" * min(depth, 900) + "]" * min(depth, 900))
    elif op == 2:  # long strings and numbers
        field = rng.choice(["name", "version", "base_digest", "kind"])
        doc[field] = rng.choice(["a" * rng.choice([31, 32, 33, 255, 4096]), "", "\u0000", "é" * 40])
    elif op == 3:
        doc["sequence"] = rng.choice([-1, 0, 2**63 - 1, 2**63, 2**64, 1.5, "1", None, True])
    elif op == 4:  # fields removed or retyped
        key = rng.choice(sorted(doc))
        if rng.random() < 0.5:
            del doc[key]
        else:
            doc[key] = rng.choice([None, 1, "x", [], {}, [1, 2]])
    elif op == 5:
        doc["tags"] = rng.choice([{"tenant": "a" * 100}, {"x": {"y": 1}}, ["a"], {str(i): str(i) for i in range(200)}])
    else:
        doc["unknown_" + str(rng.randrange(100))] = rng.choice([{"a": [1, {"b": None}]}, "s" * 1000, 1e300])
    return json.dumps(doc).encode()


def mutate_table(rng: random.Random, meta: bytes, payload: bytes) -> tuple[bytes, bytes]:
    doc = json.loads(meta)
    tensors = doc["tensors"]
    op = rng.randrange(7)
    t = rng.choice(tensors) if tensors else {}
    if op == 0 and tensors:
        t["shape"] = rng.choice([[], [0], [-1], [2**31], t["shape"][::-1], t["shape"] + [1], [1] * 40])
    elif op == 1 and tensors:
        t["offset"] = rng.choice([-1, 1, 2**32, 2**64, t["offset"] + 1, len(payload)])
    elif op == 2 and tensors:
        t["length"] = rng.choice([0, -1, t["length"] + 1, 2**32, 2**63])
    elif op == 3 and tensors:
        t["dtype"] = rng.choice(["int16", "float32", "", "int8" * 10, 8])
    elif op == 4 and tensors:
        t[rng.choice(["layer", "role"])] = rng.choice(["", "x" * 300, "fc9", "A", "bias", None])
    elif op == 5:
        doc["tensors"] = tensors * rng.choice([0, 2, 40]) if rng.random() < 0.7 else tensors[: rng.randrange(len(tensors) + 1)]
    else:
        payload = payload[: rng.randrange(len(payload) + 1)] + bytes(rng.randrange(0, 64))
    return json.dumps(doc).encode(), payload


def _beyond_device_bounds(data: bytes) -> bool:
    """The one documented difference: the device keeps a name and a version in 31 bytes each
    (C strings: no NUL inside); Python takes any string."""
    meta = json.loads(split(data)[0])
    return any(len(meta[k].encode("utf-8")) > 31 or "\x00" in meta[k] for k in ("name", "version"))


def main(cases: int, seed: int, canary: bool = False) -> int:
    bundle = example_bundle("mlp")
    smap = SlotMap.from_json(bundle.smap)
    valid = [package(bundle.smap, s, name, seq) for s, name, seq in ((1, "A", 1), (2, "B", 3), (3, "kws", 9))]
    # The example bundle aligns slots to 16 bytes: a flash with 16-byte sectors (the parser is
    # what is fuzzed here; the power-cut tests use 4 KiB sectors).
    sector = smap.alignment
    model_size = -(-len(bundle.data) // sector) * sector
    model_g, record_g = Geometry(model_size, sector), Geometry(2 * SECTOR, SECTOR)
    host = FwHost(smap, MemoryArea(model_g, bundle.data), model_g, MemoryArea(record_g), record_g,
                  [KEY.public_key()], sanitize=True)
    assert host.init_status == FwStatus.TSFW_OK, host.init_status
    assert host.format() == FwStatus.TSFW_OK and host.boot()[0] == FwStatus.TSFW_OK
    import cffi

    libc_ffi = cffi.FFI()
    libc_ffi.cdef("void *malloc(size_t); void free(void *);")
    libc = libc_ffi.dlopen(None)  # the process's malloc: ASan's, with red zones
    keyring = Keyring([KEY.public_key()])
    layout = SlotMap.from_json(bundle.smap).layout_dicts()
    if canary:  # a heap block 100 bytes shorter than the length the C is told: ASan must stop it
        data = valid[0]
        raw = libc.malloc(len(data) - 100)
        block = host.ffi.cast("uint8_t *", int(libc_ffi.cast("uintptr_t", raw)))
        host.ffi.memmove(block, data, len(data) - 100)
        host.lib.tinyswap_fw_verify(host._fw, block, len(data), host.ffi.new("tsfw_package_info_t *"))
        print("the out-of-bounds read went unnoticed", file=sys.stderr)
        return 4
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    disagreements: Counter[str] = Counter()
    for i in range(cases):
        base = rng.choice(valid)
        kind = ("raw", "metadata", "table")[i % 3]
        if kind == "raw":
            data = mutate_raw(rng, base)
        else:
            meta, payload = split(base)
            if kind == "metadata":
                try:
                    meta = mutate_metadata(rng, meta)
                except (ValueError, RecursionError):
                    continue
            else:
                meta, payload = mutate_table(rng, meta, payload)
            data = frame(meta, payload)
        raw = libc.malloc(max(1, len(data)))
        block = host.ffi.cast("uint8_t *", int(libc_ffi.cast("uintptr_t", raw)))
        try:
            host.ffi.memmove(block, data, len(data))
            info = host.ffi.new("tsfw_package_info_t *")
            status = FwStatus(host.lib.tinyswap_fw_verify(host._fw, block, len(data), info))
        finally:
            libc.free(raw)
        try:
            verify_package(parse_package(data), keyring, smap.base_digest, layout, {})
            python_ok = True
        except TinySwapError:
            python_ok = False
        counts[f"{kind}:{status.name}"] += 1
        if status == FwStatus.TSFW_OK and not python_ok:
            print(f"case {i} ({kind}): the C accepted a package Python refuses", file=sys.stderr)
            return 3
        if python_ok and status != FwStatus.TSFW_OK:
            if not (status == FwStatus.TSFW_E_FORMAT and _beyond_device_bounds(data)):
                print(f"case {i} ({kind}): the C refused ({status.name}) a package Python accepts", file=sys.stderr)
                return 5
            disagreements[status.name] += 1
            if os.environ.get("TINYSWAP_FUZZ_SHOW"):
                shown = {k: v for k, v in json.loads(split(data)[0]).items() if k not in ("tensors", "base_digest", "performance", "slot_plan", "source")}
                print(f"stricter {status.name}: {json.dumps(shown)[:300]}", file=sys.stderr)
    print(json.dumps({"cases": sum(counts.values()), "statuses": dict(sorted(counts.items())),
                      "c_stricter": dict(disagreements)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(0, 0, canary=True) if sys.argv[1] == "canary" else main(int(sys.argv[1]), int(sys.argv[2])))
