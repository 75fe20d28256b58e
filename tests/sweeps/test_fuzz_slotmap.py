"""Sweep: slot maps with junk at random places are read or refused with `SlotMapError`, never
anything else. 500 cases in CI, 5,000 in the full run."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from tinyswap.slotmap import SlotMap, SlotMapError

from tests.adapter_cases import example_bundle
from tests.conftest import FULL


@pytest.fixture(scope="module")
def bundle():
    return example_bundle("cnn")


JUNK = [None, -1, 0, 2**40, "x", [], {}, 1.5, True, [1, "a"], {"k": None}]


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


def test_fuzzed_slot_maps_are_read_or_refused_with_slotmaperror(bundle) -> None:
    rng = np.random.default_rng(0)
    paths = list(_paths(bundle.smap))
    cases = 5_000 if FULL else 500
    refused = 0
    for _ in range(cases):
        raw = copy.deepcopy(bundle.smap)
        for _ in range(int(rng.integers(1, 4))):
            path = paths[int(rng.integers(0, len(paths)))]
            node = raw
            try:
                for key in path[:-1]:
                    node = node[key]
                node[path[-1]] = JUNK[int(rng.integers(0, len(JUNK)))]
            except (KeyError, IndexError, TypeError):
                continue
        try:
            smap = SlotMap.from_json(raw)
            smap.check_model(bundle.data)
        except SlotMapError:
            refused += 1
    print(f"{cases} fuzzed slot maps: {refused} refused with SlotMapError, {cases - refused} accepted")
    assert refused > cases // 2
