"""TFLite flatbuffer schema facts used by the reader and the model builder.

Everything here is transcribed from `tensorflow/compiler/mlir/lite/schema/schema.fbs`
(tensorflow/tflite-micro @90b983c). No generated schema code is used: the reader walks the
flatbuffer with `flatbuffers.table.Table` and these tables say which vtable slot holds what.

A table field's vtable slot is its declaration index; its vtable offset is ``4 + 2 * index``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

import numpy as np

FILE_IDENTIFIER: Final = b"TFL3"
SCHEMA_VERSION: Final = 3


def field_offset(index: int) -> int:
    """The vtable offset of a table's field number `index` (flatbuffers layout)."""
    return 4 + 2 * index


class TensorType(enum.IntEnum):
    FLOAT32 = 0
    FLOAT16 = 1
    INT32 = 2
    UINT8 = 3
    INT64 = 4
    STRING = 5
    BOOL = 6
    INT16 = 7
    COMPLEX64 = 8
    INT8 = 9
    FLOAT64 = 10
    COMPLEX128 = 11
    UINT64 = 12
    RESOURCE = 13
    VARIANT = 14
    UINT32 = 15
    UINT16 = 16
    INT4 = 17
    BFLOAT16 = 18
    INT2 = 19
    UINT4 = 20
    FLOAT8_E4M3FN = 21
    FLOAT8_E5M2 = 22


# Tensor types the reference interpreter can hold in a NumPy array (little-endian).
NUMPY_DTYPES: Final[dict[TensorType, np.dtype]] = {
    TensorType.FLOAT32: np.dtype("<f4"),
    TensorType.INT32: np.dtype("<i4"),
    TensorType.UINT8: np.dtype("u1"),
    TensorType.INT64: np.dtype("<i8"),
    TensorType.BOOL: np.dtype("?"),
    TensorType.INT16: np.dtype("<i2"),
    TensorType.INT8: np.dtype("i1"),
    TensorType.FLOAT64: np.dtype("<f8"),
}

TENSOR_TYPE_OF_DTYPE: Final[dict[np.dtype, TensorType]] = {
    np.dtype(v).newbyteorder("="): k for k, v in NUMPY_DTYPES.items()
}


class Padding(enum.IntEnum):
    SAME = 0
    VALID = 1


class Activation(enum.IntEnum):
    NONE = 0
    RELU = 1
    RELU_N1_TO_1 = 2
    RELU6 = 3
    TANH = 4
    SIGN_BIT = 5


# BuiltinOperator codes (schema.fbs `enum BuiltinOperator`), all of them, so that an
# unsupported operator can be named in an error message.
BUILTIN_OPERATOR_NAMES: Final[dict[int, str]] = {
    0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D",
    4: "DEPTHWISE_CONV_2D", 5: "DEPTH_TO_SPACE", 6: "DEQUANTIZE", 7: "EMBEDDING_LOOKUP",
    8: "FLOOR", 9: "FULLY_CONNECTED", 10: "HASHTABLE_LOOKUP", 11: "L2_NORMALIZATION",
    12: "L2_POOL_2D", 13: "LOCAL_RESPONSE_NORMALIZATION", 14: "LOGISTIC", 15: "LSH_PROJECTION",
    16: "LSTM", 17: "MAX_POOL_2D", 18: "MUL", 19: "RELU",
    20: "RELU_N1_TO_1", 21: "RELU6", 22: "RESHAPE", 23: "RESIZE_BILINEAR",
    24: "RNN", 25: "SOFTMAX", 26: "SPACE_TO_DEPTH", 27: "SVDF",
    28: "TANH", 29: "CONCAT_EMBEDDINGS", 30: "SKIP_GRAM", 31: "CALL",
    32: "CUSTOM", 33: "EMBEDDING_LOOKUP_SPARSE", 34: "PAD", 35: "UNIDIRECTIONAL_SEQUENCE_RNN",
    36: "GATHER", 37: "BATCH_TO_SPACE_ND", 38: "SPACE_TO_BATCH_ND", 39: "TRANSPOSE",
    40: "MEAN", 41: "SUB", 42: "DIV", 43: "SQUEEZE",
    44: "UNIDIRECTIONAL_SEQUENCE_LSTM", 45: "STRIDED_SLICE", 46: "BIDIRECTIONAL_SEQUENCE_RNN", 47: "EXP",
    48: "TOPK_V2", 49: "SPLIT", 50: "LOG_SOFTMAX", 51: "DELEGATE",
    52: "BIDIRECTIONAL_SEQUENCE_LSTM", 53: "CAST", 54: "PRELU", 55: "MAXIMUM",
    56: "ARG_MAX", 57: "MINIMUM", 58: "LESS", 59: "NEG",
    60: "PADV2", 61: "GREATER", 62: "GREATER_EQUAL", 63: "LESS_EQUAL",
    64: "SELECT", 65: "SLICE", 66: "SIN", 67: "TRANSPOSE_CONV",
    68: "SPARSE_TO_DENSE", 69: "TILE", 70: "EXPAND_DIMS", 71: "EQUAL",
    72: "NOT_EQUAL", 73: "LOG", 74: "SUM", 75: "SQRT",
    76: "RSQRT", 77: "SHAPE", 78: "POW", 79: "ARG_MIN",
    80: "FAKE_QUANT", 81: "REDUCE_PROD", 82: "REDUCE_MAX", 83: "PACK",
    84: "LOGICAL_OR", 85: "ONE_HOT", 86: "LOGICAL_AND", 87: "LOGICAL_NOT",
    88: "UNPACK", 89: "REDUCE_MIN", 90: "FLOOR_DIV", 91: "REDUCE_ANY",
    92: "SQUARE", 93: "ZEROS_LIKE", 94: "FILL", 95: "FLOOR_MOD",
    96: "RANGE", 97: "RESIZE_NEAREST_NEIGHBOR", 98: "LEAKY_RELU", 99: "SQUARED_DIFFERENCE",
    100: "MIRROR_PAD", 101: "ABS", 102: "SPLIT_V", 103: "UNIQUE",
    104: "CEIL", 105: "REVERSE_V2", 106: "ADD_N", 107: "GATHER_ND",
    108: "COS", 109: "WHERE", 110: "RANK", 111: "ELU",
    112: "REVERSE_SEQUENCE", 113: "MATRIX_DIAG", 114: "QUANTIZE", 115: "MATRIX_SET_DIAG",
    116: "ROUND", 117: "HARD_SWISH", 118: "IF", 119: "WHILE",
    120: "NON_MAX_SUPPRESSION_V4", 121: "NON_MAX_SUPPRESSION_V5", 122: "SCATTER_ND", 123: "SELECT_V2",
    124: "DENSIFY", 125: "SEGMENT_SUM", 126: "BATCH_MATMUL", 127: "PLACEHOLDER_FOR_GREATER_OP_CODES",
    128: "CUMSUM", 129: "CALL_ONCE", 130: "BROADCAST_TO", 131: "RFFT2D",
    132: "CONV_3D", 133: "IMAG", 134: "REAL", 135: "COMPLEX_ABS",
    136: "HASHTABLE", 137: "HASHTABLE_FIND", 138: "HASHTABLE_IMPORT", 139: "HASHTABLE_SIZE",
    140: "REDUCE_ALL", 141: "CONV_3D_TRANSPOSE", 142: "VAR_HANDLE", 143: "READ_VARIABLE",
    144: "ASSIGN_VARIABLE", 145: "BROADCAST_ARGS", 146: "RANDOM_STANDARD_NORMAL", 147: "BUCKETIZE",
    148: "RANDOM_UNIFORM", 149: "MULTINOMIAL", 150: "GELU", 151: "DYNAMIC_UPDATE_SLICE",
    152: "RELU_0_TO_1", 153: "UNSORTED_SEGMENT_PROD", 154: "UNSORTED_SEGMENT_MAX", 155: "UNSORTED_SEGMENT_SUM",
    156: "ATAN2", 157: "UNSORTED_SEGMENT_MIN", 158: "SIGN", 159: "BITCAST",
    160: "BITWISE_XOR", 161: "RIGHT_SHIFT", 162: "STABLEHLO_LOGISTIC", 163: "STABLEHLO_ADD",
    164: "STABLEHLO_DIVIDE", 165: "STABLEHLO_MULTIPLY", 166: "STABLEHLO_MAXIMUM", 167: "STABLEHLO_RESHAPE",
    168: "STABLEHLO_CLAMP", 169: "STABLEHLO_CONCATENATE", 170: "STABLEHLO_BROADCAST_IN_DIM", 171: "STABLEHLO_CONVOLUTION",
    172: "STABLEHLO_SLICE", 173: "STABLEHLO_CUSTOM_CALL", 174: "STABLEHLO_REDUCE", 175: "STABLEHLO_ABS",
    176: "STABLEHLO_AND", 177: "STABLEHLO_COSINE", 178: "STABLEHLO_EXPONENTIAL", 179: "STABLEHLO_FLOOR",
    180: "STABLEHLO_LOG", 181: "STABLEHLO_MINIMUM", 182: "STABLEHLO_NEGATE", 183: "STABLEHLO_OR",
    184: "STABLEHLO_POWER", 185: "STABLEHLO_REMAINDER", 186: "STABLEHLO_RSQRT", 187: "STABLEHLO_SELECT",
    188: "STABLEHLO_SUBTRACT", 189: "STABLEHLO_TANH", 190: "STABLEHLO_SCATTER", 191: "STABLEHLO_COMPARE",
    192: "STABLEHLO_CONVERT", 193: "STABLEHLO_DYNAMIC_SLICE", 194: "STABLEHLO_DYNAMIC_UPDATE_SLICE", 195: "STABLEHLO_PAD",
    196: "STABLEHLO_IOTA", 197: "STABLEHLO_DOT_GENERAL", 198: "STABLEHLO_REDUCE_WINDOW", 199: "STABLEHLO_SORT",
    200: "STABLEHLO_WHILE", 201: "STABLEHLO_GATHER", 202: "STABLEHLO_TRANSPOSE", 203: "DILATE",
    204: "STABLEHLO_RNG_BIT_GENERATOR", 205: "REDUCE_WINDOW", 206: "STABLEHLO_COMPOSITE", 207: "STABLEHLO_SHIFT_LEFT",
    208: "STABLEHLO_CBRT", 209: "STABLEHLO_CASE",
}
BUILTIN_OPERATOR_CODES: Final[dict[str, int]] = {v: k for k, v in BUILTIN_OPERATOR_NAMES.items()}

# `Operator.builtin_options` union: type index (position in `union BuiltinOptions`, NONE = 0).
# Field kinds: "i32", "i8" (a byte enum), "bool", "f32", "i32[]" (vector of int32), "str".


@dataclass(frozen=True)
class OptionField:
    name: str
    kind: str
    default: int | float | bool | None = 0


@dataclass(frozen=True)
class OptionsTable:
    name: str
    union_type: int
    fields: tuple[OptionField, ...]


def _t(name: str, union_type: int, *fields: tuple) -> OptionsTable:
    return OptionsTable(name, union_type, tuple(OptionField(*f) for f in fields))


_ACT = ("fused_activation_function", "i8", 0)
OPTIONS_TABLES: Final[dict[str, OptionsTable]] = {
    t.name: t
    for t in (
        _t("Conv2DOptions", 1, ("padding", "i8", 0), ("stride_w", "i32", 0),
           ("stride_h", "i32", 0), _ACT, ("dilation_w_factor", "i32", 1),
           ("dilation_h_factor", "i32", 1), ("quantized_bias_type", "i8", 0)),
        _t("DepthwiseConv2DOptions", 2, ("padding", "i8", 0), ("stride_w", "i32", 0),
           ("stride_h", "i32", 0), ("depth_multiplier", "i32", 0), _ACT,
           ("dilation_w_factor", "i32", 1), ("dilation_h_factor", "i32", 1)),
        _t("Pool2DOptions", 5, ("padding", "i8", 0), ("stride_w", "i32", 0),
           ("stride_h", "i32", 0), ("filter_width", "i32", 0), ("filter_height", "i32", 0),
           _ACT),
        _t("FullyConnectedOptions", 8, _ACT, ("weights_format", "i8", 0),
           ("keep_num_dims", "bool", False), ("asymmetric_quantize_inputs", "bool", False),
           ("quantized_bias_type", "i8", 0)),
        _t("SoftmaxOptions", 9, ("beta", "f32", 0.0)),
        _t("ConcatenationOptions", 10, ("axis", "i32", 0), _ACT),
        _t("AddOptions", 11, _ACT, ("pot_scale_int16", "bool", True)),
        _t("ReshapeOptions", 17, ("new_shape", "i32[]", None)),
        _t("MulOptions", 21, _ACT),
        _t("PadOptions", 22),
        _t("BatchToSpaceNDOptions", 24),
        _t("SpaceToBatchNDOptions", 25),
        _t("TransposeOptions", 26),
        _t("ReducerOptions", 27, ("keep_dims", "bool", False)),
        _t("SubOptions", 28, _ACT, ("pot_scale_int16", "bool", True)),
        _t("SqueezeOptions", 30, ("squeeze_dims", "i32[]", None)),
        _t("StridedSliceOptions", 32, ("begin_mask", "i32", 0), ("end_mask", "i32", 0),
           ("ellipsis_mask", "i32", 0), ("new_axis_mask", "i32", 0),
           ("shrink_axis_mask", "i32", 0), ("offset", "bool", False)),
        _t("DequantizeOptions", 38),
        _t("MaximumMinimumOptions", 39),
        _t("PadV2Options", 43),
        _t("GreaterOptions", 44),
        _t("ExpandDimsOptions", 52),
        _t("ShapeOptions", 55, ("out_type", "i8", 0)),
        _t("PackOptions", 59, ("values_count", "i32", 0), ("axis", "i32", 0)),
        _t("ResizeNearestNeighborOptions", 74, ("align_corners", "bool", False),
           ("half_pixel_centers", "bool", False)),
        _t("LeakyReluOptions", 75, ("alpha", "f32", 0.0)),
        _t("QuantizeOptions", 89),
        # Control flow: IF runs one of two subgraphs (conditional adapter slots).
        _t("IfOptions", 92, ("then_subgraph_index", "i32", 0), ("else_subgraph_index", "i32", 0)),
        # Stateful streaming models (the converter's resource variables).
        _t("CallOnceOptions", 103, ("init_subgraph_index", "i32", 0)),
        _t("VarHandleOptions", 111, ("container", "str", None), ("shared_name", "str", None)),
        _t("ReadVariableOptions", 112),
        _t("AssignVariableOptions", 113),
    )
}
OPTIONS_BY_UNION_TYPE: Final[dict[int, OptionsTable]] = {
    t.union_type: t for t in OPTIONS_TABLES.values()
}

# Field indices of the tables the reader walks (declaration order in schema.fbs).
class ModelField(enum.IntEnum):
    VERSION = 0
    OPERATOR_CODES = 1
    SUBGRAPHS = 2
    DESCRIPTION = 3
    BUFFERS = 4
    METADATA_BUFFER = 5
    METADATA = 6
    SIGNATURE_DEFS = 7


class SubGraphField(enum.IntEnum):
    TENSORS = 0
    INPUTS = 1
    OUTPUTS = 2
    OPERATORS = 3
    NAME = 4


class TensorField(enum.IntEnum):
    SHAPE = 0
    TYPE = 1
    BUFFER = 2
    NAME = 3
    QUANTIZATION = 4
    IS_VARIABLE = 5
    SPARSITY = 6
    SHAPE_SIGNATURE = 7
    HAS_RANK = 8


class QuantizationField(enum.IntEnum):
    MIN = 0
    MAX = 1
    SCALE = 2
    ZERO_POINT = 3
    DETAILS_TYPE = 4  # a union takes two slots: its type byte, then its value
    DETAILS = 5
    QUANTIZED_DIMENSION = 6


class OperatorField(enum.IntEnum):
    OPCODE_INDEX = 0
    INPUTS = 1
    OUTPUTS = 2
    BUILTIN_OPTIONS_TYPE = 3
    BUILTIN_OPTIONS = 4
    CUSTOM_OPTIONS = 5
    CUSTOM_OPTIONS_FORMAT = 6
    MUTATING_VARIABLE_INPUTS = 7
    INTERMEDIATES = 8


class OperatorCodeField(enum.IntEnum):
    DEPRECATED_BUILTIN_CODE = 0
    CUSTOM_CODE = 1
    VERSION = 2
    BUILTIN_CODE = 3


class BufferField(enum.IntEnum):
    DATA = 0
    OFFSET = 1
    SIZE = 2


class MetadataField(enum.IntEnum):
    NAME = 0
    BUFFER = 1


# BuiltinOperator -> the options table its `builtin_options` must hold (None: no options).
OPTIONS_OF_OPERATOR: Final[dict[str, str]] = {
    "ADD": "AddOptions",
    "AVERAGE_POOL_2D": "Pool2DOptions",
    "MAX_POOL_2D": "Pool2DOptions",
    "CONCATENATION": "ConcatenationOptions",
    "CONV_2D": "Conv2DOptions",
    "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
    "FULLY_CONNECTED": "FullyConnectedOptions",
    "SOFTMAX": "SoftmaxOptions",
    "RESHAPE": "ReshapeOptions",
    "MUL": "MulOptions",
    "SUB": "SubOptions",
    "MEAN": "ReducerOptions",
    "SQUEEZE": "SqueezeOptions",
    "STRIDED_SLICE": "StridedSliceOptions",
    "PACK": "PackOptions",
    "SHAPE": "ShapeOptions",
    "PAD": "PadOptions",
    "PADV2": "PadV2Options",
    "EXPAND_DIMS": "ExpandDimsOptions",
    "SPACE_TO_BATCH_ND": "SpaceToBatchNDOptions",
    "BATCH_TO_SPACE_ND": "BatchToSpaceNDOptions",
    "DEQUANTIZE": "DequantizeOptions",
    "QUANTIZE": "QuantizeOptions",
    "LEAKY_RELU": "LeakyReluOptions",
    "TRANSPOSE": "TransposeOptions",
    "CALL_ONCE": "CallOnceOptions",
    "GREATER": "GreaterOptions",
    "IF": "IfOptions",
    "VAR_HANDLE": "VarHandleOptions",
    "READ_VARIABLE": "ReadVariableOptions",
    "ASSIGN_VARIABLE": "AssignVariableOptions",
    "MAXIMUM": "MaximumMinimumOptions",
    "MINIMUM": "MaximumMinimumOptions",
    "RESIZE_NEAREST_NEIGHBOR": "ResizeNearestNeighborOptions",
}
