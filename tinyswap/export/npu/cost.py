"""What Vela says an NPU bundle costs, beside the base alone and the "recompile per adapter" way.

Three Vela compiles per configuration, all with Vela's default system configuration for the
accelerator: the base model without slots (every operator on the NPU); the slotted bundle's
segments (`NpuBundle`: the base on the NPU, the branches on the CPU); and the whole slotted
model with an adapter in slot 0, every operator on the NPU: what a device flashes when each new
adapter means a recompile. Slot 0 holds random int8 weights (a dense adapter: Vela compresses
zero slots away, so an all-zero model understates the flash a real adapter takes; biases stay
zero). The CPU side's cost needs the simulator's cycle model and storage profiles, which the
compiler may not import: `tinyswap.benchmarks.npu_cost` adds them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.export.bundle import slot_map
from tinyswap.export.compiler import Compiled
from tinyswap.export.npu.bundle import NpuBundle
from tinyswap.export.npu.vela import VelaRun, compile_with_vela

DENSE_ADAPTER_SEED = 0


@dataclass(frozen=True)
class NpuCost:
    """Vela's figures for one model and configuration (see the module docstring)."""

    bundle: NpuBundle
    base: VelaRun  # the base without slots, whole
    recompiled: VelaRun  # the slotted model with a dense adapter in slot 0, whole, on the NPU

    @property
    def segments_cycles_npu(self) -> int:
        return sum(n.run.summary.cycles_npu for n in self.bundle.operators)

    @property
    def segments_cycles_total(self) -> int:
        return sum(n.run.summary.cycles_total for n in self.bundle.operators)

    @property
    def segments_macs(self) -> int:
        return sum(n.run.summary.macs for n in self.bundle.operators)

    @property
    def segments_memory_kib(self) -> tuple[tuple[str, float], ...]:
        """Vela's memory per area summed over the segments (each segment's window is its own)."""
        total: dict[str, float] = {}
        for n in self.bundle.operators:
            for area, kib in n.run.summary.memory_kib:
                total[area] = total.get(area, 0.0) + kib
        return tuple(total.items())

    @property
    def windows_bytes(self) -> int:
        """The arena windows of all segments (disjoint in the stitched model)."""
        return self.bundle.windows.total

    @property
    def slot_bytes(self) -> int:
        """One slot's byte range in the NPU bundle: what writing an adapter rewrites."""
        slots = slot_map(self.bundle.stitched).slots
        return slots[0].length if slots else 0


def with_dense_adapter(compiled: Compiled, seed: int = DENSE_ADAPTER_SEED) -> bytes:
    """`compiled`'s bytes with slot 0's int8 tensors random (biases left zero)."""
    rng = np.random.default_rng(seed)
    data = bytearray(compiled.data)
    for st in compiled.slot_tensors:
        if st.slot == 0 and np.dtype(st.tensor.dtype) == np.int8:
            offset, length = compiled.built.buffer_ranges[st.tensor]
            data[offset : offset + length] = rng.integers(-127, 128, length, dtype=np.int8).tobytes()
    return bytes(data)


def npu_cost(bundle: NpuBundle, base: Compiled) -> NpuCost:
    """Compile the base alone and the recompile-per-adapter model for `bundle`'s configuration."""
    return NpuCost(bundle, compile_with_vela(base.data, bundle.config, "base"),
                   compile_with_vela(with_dense_adapter(bundle.source), bundle.config, "recompiled"))


__all__ = ["DENSE_ADAPTER_SEED", "NpuCost", "npu_cost", "with_dense_adapter"]
