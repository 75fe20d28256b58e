"""Sweep: mutated signed packages (bit flips, truncation, trailing bytes, header bytes) are all
refused with a typed `PackageError`. 500 cases in CI, 10,000 in the full run."""

from __future__ import annotations

import numpy as np
import pytest

from tinyswap.export.pack import pack
from tinyswap.package import PackageError

from tests.conftest import FULL
from tests.tinyswap.test_package import KEY, adapter, verify


def test_fuzzed_packages_are_all_rejected_with_typed_errors(bundle) -> None:
    _, smap = bundle
    good, _ = pack(adapter(), smap, KEY)
    rng = np.random.default_rng(11)
    cases = 10_000 if FULL else 500
    kinds: dict[str, int] = {}
    for _ in range(cases):
        data = bytearray(good)
        how = rng.integers(0, 4)
        if how == 0:
            for _ in range(int(rng.integers(1, 5))):
                data[int(rng.integers(0, len(data)))] ^= 1 << int(rng.integers(0, 8))
        elif how == 1:
            data = data[: int(rng.integers(0, len(data)))]
        elif how == 2:
            data += bytes(rng.integers(0, 256, int(rng.integers(1, 16))).astype(np.uint8))
        else:
            pos = int(rng.integers(0, 64))  # the header: magic, version, lengths, JSON start
            data[pos] = int(rng.integers(0, 256))
            if bytes(data) == good:
                data[pos] ^= 1
        with pytest.raises(PackageError) as info:
            verify(bytes(data), smap)
        kinds[type(info.value).__name__] = kinds.get(type(info.value).__name__, 0) + 1
    print(f"{cases} mutated packages, all refused: {kinds}")
    assert sum(kinds.values()) == cases
