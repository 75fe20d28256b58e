"""SOFTMAX int8 (gemmlowp fixed point) and float32 against TFLite Micro and LiteRT."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyswap.export.tflite_builder import Quant
from tinyswap import Interpreter
from tinyswap.errors import ModelError
from tinyswap.kernels.base import Profile
from tinyswap.kernels.softmax import FloatSoftmaxParams, SoftmaxParams

from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm
from tests.unary_cases import unary_cases
from tests.op_cases import prepare, run_kernel, spec

OUT_Q = Quant(1.0 / 256, -128)
BETAS = st.sampled_from([1.0, 0.5, 2.0, 0.7])


@st.composite
def cases(draw, in_dtype=np.int8):
    beta = draw(BETAS)
    out_dtype = np.int8 if in_dtype == np.int8 else np.float32
    return draw(unary_cases("SOFTMAX", in_dtype, out_dtype, out_quant=OUT_Q, options={"beta": beta}))


@given(cases())
def test_int8_matches_tflite_micro(case) -> None:
    out = assert_matches_tflm(*case)
    # Probabilities in 1/256 units sum to about 256 per row.
    sums = (out[0].astype(np.int32) + 128).sum(axis=-1)
    assert np.all(np.abs(sums - 256) <= out[0].shape[-1] + 1)


@given(cases())
def test_int8_litert_profile_matches_litert(case) -> None:
    assert_matches_litert_ref(*case)


@given(cases(np.float32))
def test_float32_close_to_tflite_micro(case) -> None:
    # float exp differs in the last bits between libm and NumPy: compare within 2 ulp-ish.
    from tinyswap.oracles import run_tflm

    ours = Interpreter(model_content=case[0]).run(*case[1])[0]
    np.testing.assert_allclose(ours, run_tflm(case[0], case[1])[0], rtol=2e-6, atol=1e-7)


def test_wrong_output_quantization_is_refused() -> None:
    from tinyswap.export.tflite_builder import Model, Operator, Tensor, build_model

    x = Tensor("x", (1, 4), np.int8, quant=Quant(0.1, 0))
    y = Tensor("y", (1, 4), np.int8, quant=Quant(0.1, 0))
    model = build_model(Model([Operator("SOFTMAX", [x], [y], {"beta": 1.0})], [x], [y]))
    with pytest.raises(ModelError, match="1/256"):
        Interpreter(model_content=model).allocate_tensors()


@pytest.mark.slow
@given(cases())
def test_full(case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)


def test_prepare_builds_the_hand_derived_params_record() -> None:
    # beta 1, input scale 1/16: real = 1 * 2**-4 * 2**(31 - 5) = 2**22 = 0.5 * 2**23 ->
    # multiplier 2**30, left shift 23; input radius floor(31 * 2**26 / 2**23) = 248.
    x, y = spec(0, (1, 2), np.int8, 1 / 16, 0), spec(1, (1, 2), np.int8, 1 / 256, -128)
    prepared = prepare("SOFTMAX", [x], [y], {"beta": 1.0})
    assert prepared.params == SoftmaxParams(multiplier=2**30, left_shift=23, diff_min=-248,
                                            single_rounding=False).tabulated()
    assert prepare("SOFTMAX", [x], [y], {"beta": 1.0}, Profile.LITERT).params == \
        SoftmaxParams(2**30, 23, -248, True).tabulated()
    # exp(0) saturates Q0.31 at 2**31 - 1; differences below -248 contribute nothing.
    exps = np.frombuffer(prepared.params.exp_table, np.int64)
    assert exps[0] == 2**31 - 1 and (exps[249:] == 0).all() and (exps[:249] > 0).all()
    assert (np.diff(exps[:249]) <= 0).all()  # exp falls as the difference grows
    # Two equal logits: 0.5 each = 128 / 256 -> 128 - 128 = 0.
    np.testing.assert_array_equal(run_kernel("SOFTMAX", prepared, np.array([[7, 7]], np.int8))[0], [[0, 0]])
    floats = prepare("SOFTMAX", [spec(0, (3,), np.float32)], [spec(1, (3,), np.float32)], {"beta": 0.5})
    assert floats.params == FloatSoftmaxParams(0.5)


def test_blocks_give_the_same_result_as_one_pass(monkeypatch) -> None:
    """Large tensors are evaluated in blocks (rows, and columns of long rows); the result is
    the one-pass result, which the oracle tests compare with TFLM."""
    from tinyswap.kernels import softmax

    x, y = spec(0, (5, 300), np.int8, 1 / 16, 0), spec(1, (5, 300), np.int8, 1 / 256, -128)
    prepared = prepare("SOFTMAX", [x], [y], {"beta": 1.0})
    data = np.random.default_rng(3).integers(-128, 128, (5, 300)).astype(np.int8)
    data[2] = 7  # a constant row
    whole = run_kernel("SOFTMAX", prepared, data)[0]
    monkeypatch.setattr(softmax, "BLOCK_ELEMENTS", 7)  # 7-column blocks: every row split many times
    assert [len(cols) for _, cols in softmax._row_blocks(5, 300)] == [43] * 5
    np.testing.assert_array_equal(run_kernel("SOFTMAX", prepared, data)[0], whole)
    monkeypatch.setattr(softmax, "BLOCK_ELEMENTS", 600)  # two whole rows per block
    assert [len(cols) for _, cols in softmax._row_blocks(5, 300)] == [1] * 3
    np.testing.assert_array_equal(run_kernel("SOFTMAX", prepared, data)[0], whole)


def test_one_value_per_row_is_one_everywhere() -> None:
    """Rows of one element (a shortcut: every difference to the row max is 0) give 1.0, i.e.
    127 in int8 at scale 1/256 and zero point -128 (255 / 256, saturated), as TFLM computes."""
    x, y = spec(0, (6, 1), np.int8, 1 / 16, 0), spec(1, (6, 1), np.int8, 1 / 256, -128)
    prepared = prepare("SOFTMAX", [x], [y], {"beta": 1.0})
    data = np.array([[-128], [-1], [0], [5], [127], [3]], np.int8)
    got = run_kernel("SOFTMAX", prepared, data)[0]
    one = run_kernel("SOFTMAX", prepared, data[:1])[0]  # a single row takes the general path
    assert (got == one[0, 0]).all() and one[0, 0] == 127


def _reference_softmax(params: SoftmaxParams, x: np.ndarray) -> np.ndarray:
    """TFLM's reference int8 softmax element by element with the general fixed-point functions
    (no tables, no folded last step): the independent check of the tabulated kernel."""
    from tinyswap import fixedpoint as fp
    from tinyswap.kernels.softmax import ACCUMULATION_INTEGER_BITS, SCALED_DIFF_INTEGER_BITS

    out = np.empty(x.shape, np.int8)
    for r, row in enumerate(x.astype(np.int64)):
        diffs = row - row.max()
        inside = diffs >= params.diff_min
        rescaled = fp.multiply_by_quantized_multiplier_greater_than_one(diffs, params.multiplier, params.left_shift)
        exps = fp.exp_on_negative_values(np.where(inside, rescaled, 0), SCALED_DIFF_INTEGER_BITS)
        total = int(np.where(inside, fp.rescale(exps, 0, ACCUMULATION_INTEGER_BITS), 0).sum())
        scale, bits = fp.get_reciprocal(np.array([total]), ACCUMULATION_INTEGER_BITS)
        unsat = fp.rounding_divide_by_pot(fp.saturating_rounding_doubling_high_mul(scale, exps), bits + 31 - 8)
        out[r] = np.where(inside, np.clip(unsat - 128, -128, 127), -128)
    return out


@pytest.mark.parametrize("x_scale", [0.01, 0.05, 0.1, 0.25, 1.0])
@pytest.mark.parametrize("rows", [1, 3, 12])  # few rows: reciprocals on Python ints; 12: the array path
def test_tabulated_softmax_over_all_256_differences_matches_the_fixed_point_reference_and_tflm(x_scale, rows) -> None:
    from tinyswap.export.tflite_builder import Model, Operator, Tensor, build_model
    from tinyswap.kernels.softmax import softmax_input_scaling
    from tinyswap.oracles import run_tflm

    rng = np.random.default_rng(rows)
    # Every row holds all 256 int8 values (so every difference 0..255 to the row max occurs),
    # then a row with fewer distinct values; the 0.25 and 1.0 scales put part of the range below diff_min.
    x = np.stack([rng.permutation(np.arange(-128, 128)) for _ in range(rows)]).astype(np.int8)
    x[-1, ::2] = x[-1, 0]
    xt = Tensor("x", (rows, 256), np.int8, quant=Quant(x_scale, 0))
    yt = Tensor("y", (rows, 256), np.int8, quant=OUT_Q)
    model = build_model(Model([Operator("SOFTMAX", [xt], [yt], {"beta": 1.0})], [xt], [yt]))
    ours = Interpreter(model_content=model).run(x)[0]
    params = SoftmaxParams(*softmax_input_scaling(1.0, float(np.float32(x_scale)), False), False)
    np.testing.assert_array_equal(ours, _reference_softmax(params, x))
    np.testing.assert_array_equal(ours, run_tflm(model, [x])[0])


@pytest.mark.parametrize("x_scale", [0.05, 0.25])
def test_short_rows_on_python_ints_cover_all_256_differences_like_tflm(x_scale) -> None:
    from tinyswap.export.tflite_builder import Model, Operator, Tensor, build_model
    from tinyswap.kernels.softmax import FEW_ROWS, PYTHON_MAX_COLUMNS, softmax_input_scaling
    from tinyswap.oracles import run_tflm

    # Eight rows of 64: each a quarter of the int8 range with 127 written over one value (column 0
    # in the first four, column 1 in the others), so across the rows every difference 0..255 occurs.
    assert FEW_ROWS == 8 and PYTHON_MAX_COLUMNS == 64
    chunks = np.arange(-128, 128).reshape(4, 64)
    x = np.concatenate([chunks, chunks]).astype(np.int8)
    x[:4, 0] = 127
    x[4:, 1] = 127
    xt = Tensor("x", (8, 64), np.int8, quant=Quant(x_scale, 0))
    yt = Tensor("y", (8, 64), np.int8, quant=OUT_Q)
    model = build_model(Model([Operator("SOFTMAX", [xt], [yt], {"beta": 1.0})], [xt], [yt]))
    ours = Interpreter(model_content=model).run(x)[0]
    params = SoftmaxParams(*softmax_input_scaling(1.0, float(np.float32(x_scale)), False), False)
    np.testing.assert_array_equal(ours, _reference_softmax(params, x))
    np.testing.assert_array_equal(ours, run_tflm(model, [x])[0])


def test_row_reciprocals_match_get_reciprocal_over_edge_and_random_sums() -> None:
    """The batched path's per-row constants against `fixedpoint.get_reciprocal` on arrays:
    powers of two (where the final doubling saturates), their neighbours, the smallest and
    largest sums a row can have, and random sums."""
    from tinyswap import fixedpoint as fp
    from tinyswap.kernels.softmax import ACCUMULATION_INTEGER_BITS, _RowReciprocals

    edges = [v for k in range(32) for v in (2**k - 1, 2**k, 2**k + 1) if 1 <= v <= 2**31]
    sums = np.array(edges + list(np.random.default_rng(5).integers(1, 2**31, 4000)), np.int64)
    scale, bias, exponent = (np.empty((len(sums), 1), np.int64) for _ in range(3))
    _RowReciprocals(len(sums))(sums, scale, bias, exponent)
    want_scale, bits = fp.get_reciprocal(sums, ACCUMULATION_INTEGER_BITS)
    want_exponent = bits + 31 - 8
    np.testing.assert_array_equal(scale[:, 0], want_scale)
    np.testing.assert_array_equal(exponent[:, 0], want_exponent)
    np.testing.assert_array_equal(bias[:, 0], (1 << (want_exponent - 1)) - (128 << want_exponent))



@pytest.mark.parametrize("rows, cols, x_scale", [(64, 10, 0.1), (9, 3, 1.0), (16, 1, 0.05), (3, 100, 0.25),
                                                 (40, 256, 0.05)])
def test_batched_rows_match_tflite_micro_at_their_edges(rows, cols, x_scale) -> None:
    """Batches (more than FEW_ROWS rows: reciprocals as array passes) and a few long rows
    (reciprocals on Python ints, the rest as array passes) against TFLite Micro, with rows whose
    sums are powers of two (equal values), a dominant value (the 127 clamp), every difference
    to the row max (256 columns) and random rows."""
    from tinyswap.export.tflite_builder import Model, Operator, Tensor, build_model
    from tinyswap.kernels.softmax import softmax_input_scaling
    from tinyswap.oracles import run_tflm

    rng = np.random.default_rng(rows * cols)
    x = rng.integers(-128, 128, (rows, cols)).astype(np.int8)
    x[0] = 7  # equal values: the sum is cols * 2**19
    x[1] = -128
    x[1, 0] = 127  # one dominant value
    if cols == 256:
        x[2:] = np.stack([rng.permutation(np.arange(-128, 128)) for _ in range(rows - 2)])
    xt = Tensor("x", (rows, cols), np.int8, quant=Quant(x_scale, 0))
    yt = Tensor("y", (rows, cols), np.int8, quant=OUT_Q)
    model = build_model(Model([Operator("SOFTMAX", [xt], [yt], {"beta": 1.0})], [xt], [yt]))
    ours = Interpreter(model_content=model).run(x)[0]
    np.testing.assert_array_equal(ours, run_tflm(model, [x])[0])
    params = SoftmaxParams(*softmax_input_scaling(1.0, float(np.float32(x_scale)), False), False)
    np.testing.assert_array_equal(ours, _reference_softmax(params, x))
