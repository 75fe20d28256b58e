"""SUB (int8 with broadcasting, float32) against TFLite Micro and LiteRT BUILTIN_REF."""

from __future__ import annotations

import pytest
from hypothesis import given

from tests.binary_cases import binary_cases
from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm


@given(binary_cases("SUB"))
def test_matches_tflite_micro(case) -> None:
    assert_matches_tflm(*case)


@given(binary_cases("SUB"))
def test_litert_profile_matches_litert_reference(case) -> None:
    assert_matches_litert_ref(*case)


@given(binary_cases("SUB", float_model=True))
def test_float32_is_exact(case) -> None:
    # One float32 operation per element: IEEE arithmetic, so equality is exact here too.
    assert_matches_tflm(*case)


@pytest.mark.slow
@given(binary_cases("SUB"))
def test_full(case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)
