"""Kernels, one module per operator. Each import below registers exactly one operator."""

from tinyswap.kernels import fully_connected  # noqa: F401
from tinyswap.kernels import reshape  # noqa: F401
from tinyswap.kernels import squeeze  # noqa: F401
from tinyswap.kernels import expand_dims  # noqa: F401
from tinyswap.kernels import shape  # noqa: F401
from tinyswap.kernels import strided_slice  # noqa: F401
from tinyswap.kernels import pack  # noqa: F401
from tinyswap.kernels import concatenation  # noqa: F401
from tinyswap.kernels import conv2d  # noqa: F401
from tinyswap.kernels import depthwise_conv2d  # noqa: F401
from tinyswap.kernels import softmax  # noqa: F401
from tinyswap.kernels import average_pool_2d  # noqa: F401
from tinyswap.kernels import max_pool_2d  # noqa: F401
from tinyswap.kernels import add  # noqa: F401
from tinyswap.kernels import sub  # noqa: F401
from tinyswap.kernels import mul  # noqa: F401
from tinyswap.kernels import relu  # noqa: F401
from tinyswap.kernels import relu6  # noqa: F401
from tinyswap.kernels import quantize  # noqa: F401
from tinyswap.kernels import dequantize  # noqa: F401
from tinyswap.kernels import mean  # noqa: F401
from tinyswap.kernels import pad  # noqa: F401
from tinyswap.kernels import padv2  # noqa: F401
from tinyswap.kernels import space_to_batch_nd  # noqa: F401
from tinyswap.kernels import batch_to_space_nd  # noqa: F401
