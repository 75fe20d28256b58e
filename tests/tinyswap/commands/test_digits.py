"""The digits example behind `tinyswap demo` and `tinyswap bench`: one build (bundle + key pair
through `build_bundle`), every adapter packed and signed, test rows quantized by the one
quantizer."""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives import serialization

from tinyswap.commands.digits import DIGITS, compile_digits, prepare, resign
from tinyswap.package import Keyring, parse_package
from tinyswap.quantize import quantize_int8
from tinyswap.swap import SwapManager


def test_prepare_writes_bundle_keys_and_packages_that_verify_with_the_written_public_key(tmp_path) -> None:
    digits = prepare(tmp_path, "mlp")
    assert digits.bundle_dir == tmp_path / "bundle" and (tmp_path / "bundle" / "model.tflite").read_bytes() == \
        digits.model_bytes
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["signing_key.pem", "signing_key.pub.pem"]
    assert digits.public_key_pem == tmp_path / "keys" / "signing_key.pub.pem"
    public = serialization.load_pem_public_key(digits.public_key_pem.read_bytes())
    adapters = sorted(p.name for p in (DIGITS / "adapters" / "mlp").iterdir() if (p / "adapter.json").exists())
    assert sorted(digits.packages) == adapters
    manager = SwapManager(bytearray(digits.model_bytes), digits.slotmap, Keyring([public]))
    for domain, data in digits.packages.items():
        assert digits.package_paths[domain].read_bytes() == data
        manager.load_adapter(data)  # signed by the key on disk, bound to this bundle
        manager.delete_adapter(digits.adapters[domain].name)
    v2 = parse_package(resign(digits, "rot90", sequence=7, version="9.0"))
    assert (v2.name, v2.sequence) == (digits.adapters["rot90"].name, 7)


def test_the_test_rows_are_the_one_quantizers_and_the_build_is_the_plain_compile(tmp_path) -> None:
    digits = prepare(tmp_path, "cnn")
    with np.load(DIGITS / "digits_test.npz") as npz:
        x = npz["rot90"].astype(np.float32) / 16.0
        assert np.array_equal(digits.labels, npz["labels"])
    scale, zero_point = digits.built.input_scale, digits.built.input_zero_point
    assert np.array_equal(digits.images["rot90"], quantize_int8(x.reshape(len(x), 8, 8, 1), scale, zero_point))
    assert digits.images["rot90"].dtype == np.int8 and digits.images["rot90"].shape[1:] == (8, 8, 1)
    again = compile_digits("cnn")
    assert again.data == digits.model_bytes and again.arena_bytes == digits.arena_bytes
    assert again.slotmap == digits.slotmap and again.files is None and again.keys is None
