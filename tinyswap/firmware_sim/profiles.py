"""Device profiles as data: CPU, RAM budgets, where the model and the adapters live.

Why: the same swap protocol runs on very different hardware. A Cortex-M7 reading its model in
place from QSPI NOR and keeping adapters on an SD card has different failure modes and
latencies from one that copies the model to PSRAM, or a gateway with DRAM and NVMe. Scenarios
and tests take a `DeviceProfile` and run unchanged on each (style lesson 9).

The CPU cost model is one number per core, cycles per int8 multiply-accumulate with CMSIS-NN
kernels, with its derivation below. It is a first-order estimate for planning and comparing
profiles, not a cycle-accurate simulator.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tinyswap.firmware_sim.errors import ProfileError
from tinyswap.firmware_sim.flash import KIB, FlashOp, OpKind
from tinyswap.firmware_sim.storage import NVME, SD_SPI, W25Q128JV, StorageProfile, elapsed

MIB = 1024 * KIB

# ------------------------------------------------------------------------------------ CPU model
#
# Anchor: Lai, Suda, Chandra, "CMSIS-NN: Efficient Neural Network Kernels for Arm Cortex-M
# CPUs", arXiv:1801.06601 (2018), section 4: the CIFAR-10 CNN of the CMSIS-NN example
# (Caffe "cifar10_quick"-style: conv 5x5 3->32, pool, conv 5x5 32->32, pool, conv 5x5 32->64,
# pool, fully connected 1024->10; layer sizes from CMSIS `arm_nnexamples_cifar10_parameter.h`)
# runs in 99.1 ms per image (10.1 images/s) on a Cortex-M7 at 216 MHz (STM32F746 NUCLEO).
# The figure is quoted from the paper; our search tool returned only its abstract, so it was
# not re-read for this file. The MAC count is computed below from the layer shapes.
# Cycles per MAC thus include pooling, activation, im2col and requantization overhead.
CIFAR10_CNN_MACS = (
    32 * 32 * 32 * (5 * 5 * 3)  # conv1: 32x32 output, 32 channels, 5x5x3 kernel
    + 16 * 16 * 32 * (5 * 5 * 32)  # conv2: 16x16 output, 32 channels, 5x5x32 kernel
    + 8 * 8 * 64 * (5 * 5 * 32)  # conv3: 8x8 output, 64 channels, 5x5x32 kernel
    + 4 * 4 * 64 * 10  # ip1: 1024 -> 10
)  # = 12,298,240 MACs
CMSIS_NN_M7_SECONDS = 99.1e-3
CMSIS_NN_M7_HZ = 216e6
M7_CYCLES_PER_MAC = CMSIS_NN_M7_SECONDS * CMSIS_NN_M7_HZ / CIFAR10_CNN_MACS  # ~1.74

# Cortex-M4: no CMSIS-NN figure at hand on the same network. DERIVED: same DSP-extension
# kernels, scaled by the per-MHz performance ratio of the cores, M7/M4 = 1.47, from the
# CoreMark/MHz figures on WikiChip's Cortex-M55 page (M55 4.2 CoreMark/MHz, "+18.6% over M4,
# -19.3% over M7" -> M4 3.54, M7 5.20). Integer SIMD MAC loops scale with issue width much as
# CoreMark does (M7 dual-issues loads beside SMLAD; M4 does not).
M7_OVER_M4_PER_MHZ = (4.2 / (1 - 0.193)) / (4.2 / 1.186)
M4_CYCLES_PER_MAC = M7_CYCLES_PER_MAC * M7_OVER_M4_PER_MHZ  # ~2.56

# Cortex-M55 with Helium (MVE). DERIVED: Helium holds sixteen int8 lanes in a 128-bit
# register, "four times the throughput per cycle" of the M7's DSP extension (OpenMV docs,
# "CMSIS-NN" engine page, docs.openmv.io/openmvcam/tutorial/ml/engines/cmsis-nn.html).
# We apply that 4x to the measured M7 figure, i.e. assume CMSIS-NN's MVE kernels reach the
# same fraction of peak as its DSP kernels.
M55_CYCLES_PER_MAC = M7_CYCLES_PER_MAC / 4  # ~0.44

# Gateway (Cortex-A53 class, NEON). ASSUMED, no CMSIS-NN source applies: 128-bit NEON gives
# the same 16 int8 lanes as Helium; we reuse the M55 figure. Low confidence; the gateway
# is never the bottleneck in tinyswap's scenarios.
A53_CYCLES_PER_MAC = M55_CYCLES_PER_MAC


@dataclass(frozen=True)
class CpuProfile:
    """A core's int8 throughput with CMSIS-NN-class kernels (see the derivations above)."""

    name: str
    cycles_per_mac: float
    source: str

    def __post_init__(self) -> None:
        if self.cycles_per_mac <= 0:
            raise ProfileError(f"{self.name}: cycles_per_mac must be positive, got {self.cycles_per_mac}")


CORTEX_M4 = CpuProfile("cortex-m4", M4_CYCLES_PER_MAC, "CMSIS-NN paper M7 figure x CoreMark/MHz ratio M7/M4")
CORTEX_M7 = CpuProfile("cortex-m7", M7_CYCLES_PER_MAC, "arXiv:1801.06601: CIFAR-10 CNN 99.1 ms at 216 MHz")
CORTEX_M55 = CpuProfile("cortex-m55", M55_CYCLES_PER_MAC, "M7 figure / 4 (Helium: 4x int8 throughput per cycle)")
CORTEX_A53 = CpuProfile("cortex-a53", A53_CYCLES_PER_MAC, "ASSUMED equal to M55 (128-bit SIMD)")
CPUS: dict[str, CpuProfile] = {c.name: c for c in (CORTEX_M4, CORTEX_M7, CORTEX_M55, CORTEX_A53)}


# ------------------------------------------------------------------------------------ devices

class ModelPlacement(str, enum.Enum):
    """Where inference reads the model from. A `str` enum, so reports and comparisons with the
    scenario format's strings keep working."""

    XIP = "xip"  # read in place from the model's flash (memory-mapped), zero copy
    RAM = "ram"  # copied into RAM at boot; slot writes never reach flash

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class DeviceProfile:
    """One device: CPU and clock, RAM and its budgets, model and adapter storage.

    model_placement: "xip" (weights read in place from `model_storage`, zero copy) or "ram"
        (the model is copied from `model_storage` into RAM at boot).
    weight_bandwidth: bytes/s at which inference streams weights from where they live, or
        None if weights sit in fast RAM and the compute term dominates.
    arena_budget / cache_budget: RAM for the TFLM tensor arena and the LRU cache of verified
        adapter packages; with the resident model copy they must fit in RAM.
    """

    name: str
    description: str
    cpu: CpuProfile
    clock_hz: float
    sram_bytes: int
    ext_ram_bytes: int
    arena_budget: int
    cache_budget: int
    model_storage: StorageProfile
    model_placement: ModelPlacement
    adapter_storage: StorageProfile
    weight_bandwidth: float | None
    model_budget: int = 0

    def __post_init__(self) -> None:
        try:
            placement = ModelPlacement(self.model_placement)
        except ValueError:
            raise ProfileError(f"{self.name}: model_placement must be 'xip' or 'ram', "
                               f"got {self.model_placement!r}") from None
        object.__setattr__(self, "model_placement", placement)
        if placement is ModelPlacement.RAM and self.model_budget <= 0:
            raise ProfileError(f"{self.name}: a RAM-resident model needs a model_budget")
        used = self.arena_budget + self.cache_budget + self.model_budget
        if used > self.ram_bytes:
            raise ProfileError(
                f"{self.name}: budgets ({used} bytes: arena {self.arena_budget}, cache {self.cache_budget}, "
                f"model {self.model_budget}) exceed RAM ({self.ram_bytes} bytes)")

    @property
    def ram_bytes(self) -> int:
        return self.sram_bytes + self.ext_ram_bytes


def estimate_inference_seconds(macs: int, profile: DeviceProfile, weight_bytes: int = 0) -> float:
    """Seconds for one inference of `macs` int8 MACs that reads `weight_bytes` of weights.

    compute = macs * cycles_per_mac / clock; plus, where weights are streamed from slower
    memory (XIP flash, PSRAM), weight_bytes / weight_bandwidth. The two are added, not
    overlapped: conservative for an in-order core whose caches are smaller than the model.
    """
    if macs < 0 or weight_bytes < 0:
        raise ValueError(f"macs and weight_bytes must be >= 0, got {macs}, {weight_bytes}")
    seconds = macs * profile.cpu.cycles_per_mac / profile.clock_hz
    if profile.weight_bandwidth is not None:
        seconds += weight_bytes / profile.weight_bandwidth
    return seconds


def model_load_seconds(model_bytes: int, profile: DeviceProfile, worst: bool = False) -> float:
    """Boot-time cost of placing the model: 0 for XIP, one read of the image for "ram"."""
    if profile.model_placement is ModelPlacement.XIP:
        return 0.0
    return elapsed([FlashOp(OpKind.READ, 0, model_bytes)], profile.model_storage, worst)


# Cortex-M7 at 480 MHz with 512 KB of SRAM (STM32H7-class: 480 MHz max clock, 512 KB AXI SRAM).
# The model is read in place from QSPI NOR (memory-mapped, XIP) at the W25Q128JV's quad read
# bandwidth; adapters live in LittleFS on an SD card over SPI.
MCU_QSPI = DeviceProfile(
    name="mcu-qspi",
    description="Cortex-M7 480 MHz, 512 KB SRAM, model XIP from QSPI NOR, adapters on SD (SPI)",
    cpu=CORTEX_M7,
    clock_hz=480e6,
    sram_bytes=512 * KIB,
    ext_ram_bytes=0,
    arena_budget=320 * KIB,
    cache_budget=128 * KIB,  # leaves 64 KB for stacks, firmware data and littlefs buffers
    model_storage=W25Q128JV,
    model_placement=ModelPlacement.XIP,
    adapter_storage=SD_SPI,
    weight_bandwidth=W25Q128JV.read_bandwidth,
)

# The same core with 8 MB of PSRAM: the model is copied from QSPI NOR into PSRAM at boot;
# adapters live in LittleFS on the QSPI NOR. ASSUMED PSRAM bandwidth: octal (x8) DDR PSRAM
# at 200 MHz = 400 MB/s (APS6408L-class parts); not from docs/storage-facts.md.
MCU_RAM = DeviceProfile(
    name="mcu-ram",
    description="Cortex-M7 480 MHz, 512 KB SRAM + 8 MB PSRAM, model in PSRAM, adapters on QSPI NOR",
    cpu=CORTEX_M7,
    clock_hz=480e6,
    sram_bytes=512 * KIB,
    ext_ram_bytes=8 * MIB,
    arena_budget=384 * KIB,
    cache_budget=2 * MIB,
    model_storage=W25Q128JV,
    model_placement=ModelPlacement.RAM,
    adapter_storage=W25Q128JV,
    weight_bandwidth=400e6,
    model_budget=4 * MIB,
)

# A gateway: Cortex-A53-class at 1.2 GHz, 1 GB DRAM, model and adapters on NVMe.
GATEWAY = DeviceProfile(
    name="gateway",
    description="Cortex-A53-class 1.2 GHz, 1 GB DRAM, model in DRAM, adapters on NVMe",
    cpu=CORTEX_A53,
    clock_hz=1.2e9,
    sram_bytes=0,
    ext_ram_bytes=1024 * MIB,
    arena_budget=64 * MIB,
    cache_budget=256 * MIB,
    model_storage=NVME,
    model_placement=ModelPlacement.RAM,
    adapter_storage=NVME,
    weight_bandwidth=None,
    model_budget=256 * MIB,
)

DEVICES: dict[str, DeviceProfile] = {d.name: d for d in (MCU_QSPI, MCU_RAM, GATEWAY)}

__all__ = [
    "CORTEX_A53", "CORTEX_M4", "CORTEX_M55", "CORTEX_M7", "CPUS", "CpuProfile", "DEVICES", "DeviceProfile",
    "GATEWAY", "MCU_QSPI", "MCU_RAM", "ModelPlacement", "estimate_inference_seconds", "model_load_seconds",
]
