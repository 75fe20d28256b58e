"""The operator registry: one explicit registration per kernel module, duplicates refused."""

from __future__ import annotations

from typing import TypeVar

from tinyswap.errors import UnsupportedOpError
from tinyswap.kernels.base import Kernel

_KERNELS: dict[str, Kernel] = {}

K = TypeVar("K", bound=type[Kernel])


def register(kernel_class: K) -> K:
    """Class decorator: make `kernel_class` the implementation of its `op_name`."""
    name = kernel_class.op_name
    if name in _KERNELS:
        raise RuntimeError(f"two kernels registered for {name}: {_KERNELS[name]!r} and {kernel_class!r}")
    _KERNELS[name] = kernel_class()
    return kernel_class


def get_kernel(op_name: str, where: str = "") -> Kernel:
    try:
        return _KERNELS[op_name]
    except KeyError:
        prefix = f"{where}: " if where else ""
        raise UnsupportedOpError(
            f"{prefix}operator {op_name} is not supported; supported: {', '.join(sorted(_KERNELS))}"
        ) from None


def supported_ops() -> list[str]:
    return sorted(_KERNELS)
