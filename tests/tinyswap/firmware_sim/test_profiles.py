"""Device profiles and the CPU cost model: checked against the cited figures (written here,
independently of profiles.py) and against invariants every profile must hold."""

from __future__ import annotations

import dataclasses

import pytest

from tinyswap.firmware_sim.errors import ProfileError
from tinyswap.firmware_sim.profiles import (
    CIFAR10_CNN_MACS,
    CORTEX_M4,
    CORTEX_M7,
    CORTEX_M55,
    DEVICES,
    GATEWAY,
    MCU_QSPI,
    MCU_RAM,
    ModelPlacement,
    estimate_inference_seconds,
    model_load_seconds,
)
from tinyswap.firmware_sim.storage import W25Q128JV


@pytest.fixture(params=sorted(DEVICES))
def device(request):
    return DEVICES[request.param]


# Figures written here from their sources, not read from profiles.py, so that a profile that
# drifts from them fails instead of agreeing with itself.
# CMSIS-NN paper (arXiv:1801.06601, section 4): the CIFAR-10 CNN runs in 99.1 ms on a
# Cortex-M7 at 216 MHz.
PAPER_SECONDS = 99.1e-3
PAPER_HZ = 216e6
# The network (CMSIS `arm_nnexamples_cifar10_parameter.h`): (out h, out w, out c, kernel h,
# kernel w, in c) per conv layer, then the fully connected layer (in, out).
CIFAR10_CONVS = [(32, 32, 32, 5, 5, 3), (16, 16, 32, 5, 5, 32), (8, 8, 64, 5, 5, 32)]
CIFAR10_FC = (4 * 4 * 64, 10)
# Arm's published CoreMark/MHz: Cortex-M4 3.42, Cortex-M7 5.01.
COREMARK_PER_MHZ = {"cortex-m4": 3.42, "cortex-m7": 5.01}
# Helium holds 128-bit vectors of int8; the M7's DSP SIMD works on 32-bit registers.
HELIUM_BITS, DSP_SIMD_BITS = 128, 32
# STM32H7 datasheet: 480 MHz maximum CPU clock, 512 KB AXI SRAM.
STM32H7_MAX_HZ, STM32H7_AXI_SRAM = 480e6, 512 * 1024


def cifar10_macs() -> int:
    convs = sum(h * w * c * kh * kw * cin for h, w, c, kh, kw, cin in CIFAR10_CONVS)
    return convs + CIFAR10_FC[0] * CIFAR10_FC[1]


def test_cifar10_mac_count_from_the_layer_shapes():
    # conv1 2,457,600 + conv2 6,553,600 + conv3 3,276,800 + fc 10,240
    assert cifar10_macs() == 12_298_240
    assert CIFAR10_CNN_MACS == cifar10_macs()


def test_m7_figure_reproduces_the_cmsis_nn_measurement():
    assert CORTEX_M7.cycles_per_mac == pytest.approx(PAPER_SECONDS * PAPER_HZ / cifar10_macs())
    assert CORTEX_M7.cycles_per_mac == pytest.approx(1.74, abs=0.01)
    # the estimator, on the paper's board (M7 at 216 MHz, weights in fast memory), gives the paper's time
    paper_board = dataclasses.replace(MCU_QSPI, clock_hz=PAPER_HZ, weight_bandwidth=None)
    assert estimate_inference_seconds(cifar10_macs(), paper_board) == pytest.approx(PAPER_SECONDS)
    # and the same core at mcu-qspi's clock scales with the clock alone
    at_480 = dataclasses.replace(paper_board, clock_hz=480e6)
    assert estimate_inference_seconds(cifar10_macs(), at_480) == pytest.approx(PAPER_SECONDS * 216 / 480)


def test_core_ordering():
    assert CORTEX_M55.cycles_per_mac < CORTEX_M7.cycles_per_mac < CORTEX_M4.cycles_per_mac
    assert CORTEX_M7.cycles_per_mac / CORTEX_M55.cycles_per_mac == pytest.approx(HELIUM_BITS / DSP_SIMD_BITS)
    # M4 vs M7 per clock follows Arm's CoreMark/MHz figures (within 1%)
    ratio = COREMARK_PER_MHZ["cortex-m7"] / COREMARK_PER_MHZ["cortex-m4"]
    assert CORTEX_M4.cycles_per_mac / CORTEX_M7.cycles_per_mac == pytest.approx(ratio, rel=0.01)


def test_three_device_profiles():
    assert set(DEVICES) == {"mcu-qspi", "mcu-ram", "gateway"}
    assert all(DEVICES[name].name == name for name in DEVICES)
    assert MCU_QSPI.adapter_storage.name == "sd-spi" and MCU_RAM.adapter_storage is W25Q128JV
    assert GATEWAY.model_storage.name == "nvme" and GATEWAY.adapter_storage.name == "nvme"
    # the STM32H7-class boards stay within that part's datasheet
    for mcu in (MCU_QSPI, MCU_RAM):
        assert mcu.clock_hz <= STM32H7_MAX_HZ and mcu.sram_bytes == STM32H7_AXI_SRAM


def test_placement_invariants(device):
    if device.model_placement is ModelPlacement.XIP:
        # weights are streamed from where they live, and no RAM is set aside for a copy
        assert device.model_placement == "xip" and device.model_budget == 0
        assert device.weight_bandwidth == device.model_storage.read_bandwidth
        assert model_load_seconds(1_000_000, device) == 0.0
    else:
        # a RAM copy must be worth making: it streams at least as fast as the flash it came from
        assert device.model_placement == "ram" and device.model_budget > 0
        assert device.weight_bandwidth is None or device.weight_bandwidth > device.model_storage.read_bandwidth


def test_descriptions_agree_with_the_numbers(device):
    hz = device.clock_hz
    clock = f"{hz / 1e9:g} GHz" if hz >= 1e9 else f"{hz / 1e6:g} MHz"
    assert clock in device.description
    if device.sram_bytes:
        assert f"{device.sram_bytes // 1024} KB SRAM" in device.description


def test_budgets_fit_in_ram(device):
    assert device.arena_budget + device.cache_budget + device.model_budget <= device.ram_bytes
    with pytest.raises(ProfileError, match="exceed RAM"):
        dataclasses.replace(device, arena_budget=device.ram_bytes)


def test_profile_validation():
    with pytest.raises(ProfileError, match="placement"):
        dataclasses.replace(MCU_QSPI, model_placement="rom")
    with pytest.raises(ProfileError, match="model_budget"):
        dataclasses.replace(MCU_RAM, model_budget=0)


def test_inference_estimate_is_linear_and_adds_weight_streaming(device):
    t1 = estimate_inference_seconds(1_000_000, device)
    assert estimate_inference_seconds(3_000_000, device) == pytest.approx(3 * t1)
    assert t1 == pytest.approx(1_000_000 * device.cpu.cycles_per_mac / device.clock_hz)
    faster = dataclasses.replace(device, clock_hz=2 * device.clock_hz)
    assert estimate_inference_seconds(1_000_000, faster) == pytest.approx(t1 / 2)
    with_weights = estimate_inference_seconds(1_000_000, device, weight_bytes=300_000)
    if device.weight_bandwidth is None:
        assert with_weights == t1
    else:
        assert with_weights - t1 == pytest.approx(300_000 / device.weight_bandwidth)
    with pytest.raises(ValueError):
        estimate_inference_seconds(-1, device)


def test_xip_streams_weights_at_qspi_read_bandwidth():
    extra = estimate_inference_seconds(0, MCU_QSPI, weight_bytes=665_000)
    assert extra == pytest.approx(665_000 / W25Q128JV.read_bandwidth) == pytest.approx(0.01)
    # the PSRAM copy streams faster than XIP from NOR
    assert estimate_inference_seconds(0, MCU_RAM, weight_bytes=665_000) < extra


def test_model_load_cost():
    assert model_load_seconds(1_000_000, MCU_QSPI) == 0.0
    expected = W25Q128JV.read_latency.typ + 1_000_000 / W25Q128JV.read_bandwidth
    assert model_load_seconds(1_000_000, MCU_RAM) == pytest.approx(expected)
    assert model_load_seconds(1_000_000, GATEWAY, worst=True) >= model_load_seconds(1_000_000, GATEWAY)
