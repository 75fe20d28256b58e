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
def test_short_rows_on_python_numbers_cover_all_256_differences_like_tflm(x_scale) -> None:
    from tinyswap.export.tflite_builder import Model, Operator, Tensor, build_model
    from tinyswap.kernels.softmax import PYTHON_MAX_VALUES, softmax_input_scaling
    from tinyswap.oracles import run_tflm

    # Thirty-two single rows of 16 (each on the Python path): each a sixteenth of the int8 range
    # with 127 written over one value (column 0 in the first sixteen, column 1 in the others),
    # so across the rows every difference 0..255 occurs.
    assert PYTHON_MAX_VALUES == 16
    chunks = np.arange(-128, 128).reshape(16, 16)
    rows = np.concatenate([chunks, chunks]).astype(np.int8)
    rows[:16, 0] = 127
    rows[16:, 1] = 127
    xt = Tensor("x", (1, 16), np.int8, quant=Quant(x_scale, 0))
    yt = Tensor("y", (1, 16), np.int8, quant=OUT_Q)
    model = build_model(Model([Operator("SOFTMAX", [xt], [yt], {"beta": 1.0})], [xt], [yt]))
    interp = Interpreter(model_content=model)
    ours = np.concatenate([interp.run(row[None])[0] for row in rows])
    params = SoftmaxParams(*softmax_input_scaling(1.0, float(np.float32(x_scale)), False), False)
    np.testing.assert_array_equal(ours, _reference_softmax(params, rows))
    np.testing.assert_array_equal(ours, np.concatenate([run_tflm(model, [row[None]])[0] for row in rows]))


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
                                                 (40, 256, 0.05), (2, 64, 0.02), (8, 65, 0.1), (64, 65, 0.01),
                                                 (9, 511, 0.003), (2, 511, 0.3)])
def test_batched_rows_match_tflite_micro_at_their_edges(rows, cols, x_scale) -> None:
    """Batches and a few long rows (the bracketed passes, flat and broadcast) against TFLite
    Micro, with rows whose
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


# --- the bracketed paths (a float reciprocal per row, exact integers where it is doubtful) ----

def _bound_step(params: SoftmaxParams, x: np.ndarray) -> np.ndarray:
    """The output of the step `Softmax.bind` picks for x's shape (outside a plan: no budget)."""
    from tinyswap.kernels.base import Prepared
    from tinyswap.kernels.softmax import Softmax

    out = np.full_like(x, 99)
    Softmax().bind(Prepared([x.shape], params), [x], [out])()
    return out


def _random_params(rng: np.random.Generator, single_rounding: bool) -> SoftmaxParams:
    """Input scales from 1e-3 to 10 (log-uniform: diff_min from far below -255 to a few steps)
    and betas as float32, as prepare widens them."""
    from tinyswap.kernels.softmax import softmax_input_scaling

    scale = float(np.float32(np.exp(rng.uniform(np.log(1e-3), np.log(10.0)))))
    beta = float(np.float32(rng.choice([1.0, 0.5, 2.0, 0.7, rng.uniform(0.05, 4.0)])))
    return SoftmaxParams(*softmax_input_scaling(beta, scale, single_rounding), single_rounding).tabulated()


def _mixed_rows(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Rows of every kind the arithmetic treats differently: full-range random, clustered near
    the max (large sums), all equal (sums cols * 2**19), one 127 over -128s (the 127 clamp),
    the extremes only, and a few distinct values."""
    x = np.empty((rows, cols), np.int8)
    for r in range(rows):
        kind = r % 6 if r < 6 else int(rng.integers(6))
        if kind == 0:
            x[r] = rng.integers(-128, 128, cols)
        elif kind == 1:
            top = int(rng.integers(-120, 128))
            x[r] = np.clip(top - rng.integers(0, 8, cols), -128, 127)
        elif kind == 2:
            x[r] = rng.integers(-128, 128)
        elif kind == 3:
            x[r] = -128
            x[r, rng.integers(cols)] = 127
        elif kind == 4:
            x[r] = rng.choice(np.array([-128, 127], np.int8), cols)
        else:
            x[r] = rng.choice(rng.integers(-128, 128, 3), cols)
    return x


# rows at each path's edges (the Python path up to PYTHON_MAX_VALUES values; flat passes for rows
# up to SPREAD_MAX_COLUMNS values, broadcast passes past it; DEFINED_MAX_COLUMNS)
@pytest.mark.parametrize("rows, cols", [(1, 1), (1, 2), (1, 10), (1, 16), (1, 17), (2, 8), (3, 6), (8, 64),
                                        (8, 65), (9, 1), (9, 10), (300, 16), (64, 3),
                                        (64, 16), (64, 17), (64, 64), (17, 65), (3, 300), (1, 511), (4, 511),
                                        (9, 511)])
@pytest.mark.parametrize("single_rounding", [False, True])
def test_bracketed_paths_equal_the_exact_eval_over_random_scales_betas_and_rows(rows, cols, single_rounding) -> None:
    from tinyswap.kernels.softmax import _softmax_int8

    rng = np.random.default_rng(rows * 1000 + cols + single_rounding)
    for _ in range(12 if rows * cols < 5000 else 3):
        params = _random_params(rng, single_rounding)
        x = _mixed_rows(rng, rows, cols)
        np.testing.assert_array_equal(_bound_step(params, x), _softmax_int8(params, x))


@pytest.mark.parametrize("rows, cols", [(1, 10), (2, 8), (8, 64), (64, 10), (20, 100)])
def test_every_value_through_the_exact_fallback_gives_the_same_output(monkeypatch, rows, cols) -> None:
    """A bracket 1 wide always holds an integer: every value (on the Python path: every row)
    then takes the exact integer path (`_exact_codes`), which must give the eval's output too."""
    from tinyswap.kernels import softmax

    rng = np.random.default_rng(cols)
    params, x = _random_params(rng, False), _mixed_rows(rng, rows, cols)
    want = softmax._softmax_int8(params, x)
    calls = []
    exact = softmax._exact_codes
    monkeypatch.setattr(softmax, "_exact_codes", lambda *a: calls.append(1) or exact(*a))
    monkeypatch.setattr(softmax, "BRACKET", 0.5)
    np.testing.assert_array_equal(_bound_step(params, x), want)
    assert len(calls) == (rows if rows * cols <= 16 else rows * cols)


# Found by search (scale, beta 1, TFLM rounding): the float estimate of the last value listed
# lies within 2 * BRACKET above an integer, and its floor is one more than TFLM's output. The
# bracket check must send it to the exact path.
DOUBTFUL_ROWS = [
    (0.24758215248584747, [127, -72, -105, 113, 13, 50, 123, 45, -99, 115], 3, -123),
    (0.0055400654673576355, [127, 78, 90, 54, 22, -40, -1, -60, 104, 61], 2, -97),
    (0.0055400654673576355, [127, 107, -73, -27, -84, -20, 75, 19, 9, -53], 3, -109),
]


@pytest.mark.parametrize("scale, row, col, want", DOUBTFUL_ROWS)
@pytest.mark.parametrize("rows", [1, 64])  # the Python path and the flat passes
def test_values_whose_float_floor_is_wrong_take_the_exact_path(scale, row, col, want, rows) -> None:
    from tinyswap.export.tflite_builder import Model, Operator, Tensor, build_model
    from tinyswap.kernels.softmax import BRACKET, _sixteen_x_table, softmax_input_scaling
    from tinyswap.oracles import run_tflm

    params = SoftmaxParams(*softmax_input_scaling(1.0, scale, False), False).tabulated()
    index = max(row) - np.array(row)
    inverse = 1.0 / _sixteen_x_table(params)[index].sum()
    h = float(np.frombuffer(params.exp_table, np.int64)[index[col]]) * inverse + 0.5 + BRACKET - 128
    assert h - np.floor(h) < 2 * BRACKET and np.floor(h) == want + 1  # the float floor alone is wrong
    x = np.tile(np.array(row, np.int8), (rows, 1))
    ours = _bound_step(params, x)
    assert (ours[:, col] == want).all()
    xt = Tensor("x", (rows, len(row)), np.int8, quant=Quant(scale, 0))
    yt = Tensor("y", (rows, len(row)), np.int8, quant=OUT_Q)
    model = build_model(Model([Operator("SOFTMAX", [xt], [yt], {"beta": 1.0})], [xt], [yt]))
    np.testing.assert_array_equal(Interpreter(model_content=model).run(x)[0], run_tflm(model, [x])[0])
    np.testing.assert_array_equal(ours, run_tflm(model, [x])[0])


def _reciprocal_error_holds(sums: np.ndarray) -> None:
    """|s - 2**61 / d| <= RECIPROCAL_ERROR_MAX for GetReciprocal's s and half denominator d of
    each Q12.19 sum in [2**27, 2**28) (d = sum << 3). A smaller sum x gives the d (and s) of
    x << (28 - bit_length(x)), a sum in this range: so this range covers every sum of a row of
    at most DEFINED_MAX_COLUMNS values."""
    from tinyswap import fixedpoint as fp
    from tinyswap.kernels.softmax import ACCUMULATION_INTEGER_BITS, RECIPROCAL_ERROR_MAX

    assert sums.min() >= 2**27 and sums.max() < 2**28
    scale, bits = fp.get_reciprocal(sums, ACCUMULATION_INTEGER_BITS)
    assert (bits == 8).all()
    d = sums << 3
    assert (np.abs(scale * d - 2**61) <= RECIPROCAL_ERROR_MAX * d).all()  # products below 2**62


def test_reciprocal_error_bound_over_a_sample_of_sums() -> None:
    rng = np.random.default_rng(9)
    edges = np.arange(2**27, 2**27 + 2**16)  # the powers of two saturate: s = 2**31 - 1
    strided = np.arange(2**27, 2**28, 509)
    _reciprocal_error_holds(np.concatenate([edges, strided, rng.integers(2**27, 2**28, 2**18), [2**28 - 1]]))


@pytest.mark.slow
def test_reciprocal_error_bound_over_every_sum() -> None:
    """The bound the bracketed paths rest on, over all 2**27 sums (about a minute)."""
    step = 1 << 22
    for start in range(2**27, 2**28, step):
        _reciprocal_error_holds(np.arange(start, start + step, dtype=np.int64))


@pytest.mark.parametrize("cols", [512, 4095, 4096, 4097, 8192, 8193])
@pytest.mark.parametrize("rows", [1, 9])
def test_rows_past_tflms_defined_sums_fail_as_tflite_micro_does(rows, cols) -> None:
    """Rows whose Q12.19 sum reaches 2**28 (here equal values: cols * 2**19; 4096 of them make
    2**31, where TFLM's int32 sum wraps; 8192 make 2**32) have no TFLM output (the wheel aborts,
    see the next test): every path refuses the invoke with a typed error naming it, and a row of
    one value fewer at the maximum (511 * 2**19 + a smaller term) still runs."""
    from tinyswap.errors import InterpreterError
    from tinyswap.kernels.softmax import _softmax_int8, softmax_input_scaling

    params = SoftmaxParams(*softmax_input_scaling(1.0, 0.1, False), False).tabulated()
    x = np.full((rows, cols), 7, np.int8)
    with pytest.raises(InterpreterError, match="TFLite Micro aborts on this input"):
        _bound_step(params, x)
    with pytest.raises(InterpreterError, match="TFLite Micro aborts on this input"):
        _softmax_int8(params, x)
    x[:] = -128
    x[:, :511] = 7  # the largest sum of equal terms TFLM takes, plus the -128s' small terms
    np.testing.assert_array_equal(_bound_step(params, x), _softmax_int8(params, x))


def test_tflite_micro_aborts_on_a_row_sum_of_2_to_the_28() -> None:
    """The wheel computes 511 equal values (sum 511 * 2**19) and aborts the process on 512
    (RoundingDivideByPOT's exponent check): the limit DEFINED_MAX_COLUMNS stands for."""
    import subprocess
    import sys

    from tinyswap.kernels.softmax import DEFINED_MAX_COLUMNS

    assert DEFINED_MAX_COLUMNS == 511
    script = """
import numpy as np, sys
from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model
from tinyswap.oracles import run_tflm
for cols in (511, 512):
    xt = Tensor("x", (1, cols), np.int8, quant=Quant(0.1, 0))
    yt = Tensor("y", (1, cols), np.int8, quant=Quant(1 / 256, -128))
    model = build_model(Model([Operator("SOFTMAX", [xt], [yt], {"beta": 1.0})], [xt], [yt]))
    out = run_tflm(model, [np.zeros((1, cols), np.int8)])[0]
    print(cols, sorted(set(out[0].tolist())), flush=True)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines() == ["511 [-127]"]
    assert done.returncode != 0


@pytest.mark.parametrize("rows, cols", [(1, 600), (9, 1000), (2, 4096), (3300, 10), (70, 500)])
def test_long_rows_on_the_planned_integer_passes_match_tflite_micro(rows, cols) -> None:
    """Rows longer than DEFINED_MAX_COLUMNS and tensors past BRACKETED_MAX_VALUES
    (`_PlannedSoftmax`; reciprocals on Python ints up to FEW_ROWS rows) whose sums stay below
    2**28, so the wheel computes them: random values, up to 511 equal maxima over -128s (the
    largest sum of equal terms TFLM takes), one dominant value."""
    from tinyswap.export.tflite_builder import Model, Operator, Tensor, build_model
    from tinyswap.kernels.softmax import _softmax_int8, softmax_input_scaling
    from tinyswap.oracles import run_tflm

    rng = np.random.default_rng(cols)
    x = rng.integers(-128, 128, (rows, cols)).astype(np.int8)
    x[0] = -128
    x[0, :511] = 100
    if rows > 1:
        x[1] = -128
        x[1, 5] = 127
    xt = Tensor("x", (rows, cols), np.int8, quant=Quant(0.05, 0))
    yt = Tensor("y", (rows, cols), np.int8, quant=OUT_Q)
    model = build_model(Model([Operator("SOFTMAX", [xt], [yt], {"beta": 1.0})], [xt], [yt]))
    ours = Interpreter(model_content=model).run(x)[0]
    np.testing.assert_array_equal(ours, run_tflm(model, [x])[0])
    params = SoftmaxParams(*softmax_input_scaling(1.0, float(np.float32(0.05)), False), False).tabulated()
    np.testing.assert_array_equal(_bound_step(params, x), ours)
    np.testing.assert_array_equal(_softmax_int8(params, x), ours)


def test_past_the_plans_buffer_budget_the_eval_step_runs() -> None:
    from tinyswap.kernels.base import PlanBudget, Prepared, plan_budget
    from tinyswap.kernels.softmax import Softmax, _softmax_int8, softmax_input_scaling

    params = SoftmaxParams(*softmax_input_scaling(1.0, 0.1, False), False).tabulated()
    x = _mixed_rows(np.random.default_rng(4), 64, 10)
    for budget, bracketed in ((0, False), (64 * 10 * 64 + 64 * 24 + (16 << 10), True)):
        out = np.empty_like(x)
        with plan_budget(PlanBudget(buffer_bytes=budget)) as left:
            step = Softmax().bind(Prepared([x.shape], params), [x], [out])
        assert ("_BracketedSoftmax" in step.__qualname__) == bracketed and left.buffer_bytes == 0
        step()
        np.testing.assert_array_equal(out, _softmax_int8(params, x))
