"""The Ethos-U accelerator configurations an NPU bundle can be compiled for."""

from __future__ import annotations

from enum import StrEnum

from tinyswap.export.npu.errors import NpuConfigError


class NpuConfig(StrEnum):
    """Vela's `--accelerator-config` names (the MAC units per cycle follow the dash)."""

    U55_128 = "ethos-u55-128"
    U55_256 = "ethos-u55-256"
    U65_256 = "ethos-u65-256"
    U85_256 = "ethos-u85-256"

    @classmethod
    def parse(cls, name: str) -> "NpuConfig":
        try:
            return cls(name)
        except ValueError:
            raise NpuConfigError(f"unknown NPU configuration {name!r}; expected one of "
                                 f"{', '.join(c.value for c in cls)}") from None


__all__ = ["NpuConfig"]
