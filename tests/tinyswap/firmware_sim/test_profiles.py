"""Device profiles and the CPU cost model: derived from the cited figures, internally consistent."""

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
    estimate_inference_seconds,
    model_load_seconds,
)
from tinyswap.firmware_sim.storage import W25Q128JV


@pytest.fixture(params=sorted(DEVICES))
def device(request):
    return DEVICES[request.param]


def test_cifar10_mac_count_from_the_layer_shapes():
    # conv1 2,457,600 + conv2 6,553,600 + conv3 3,276,800 + fc 10,240
    assert CIFAR10_CNN_MACS == 12_298_240


def test_m7_figure_reproduces_the_cmsis_nn_measurement():
    seconds = CIFAR10_CNN_MACS * CORTEX_M7.cycles_per_mac / 216e6
    assert seconds == pytest.approx(99.1e-3)
    assert CORTEX_M7.cycles_per_mac == pytest.approx(1.74, abs=0.01)


def test_core_ordering():
    assert CORTEX_M55.cycles_per_mac < CORTEX_M7.cycles_per_mac < CORTEX_M4.cycles_per_mac
    assert CORTEX_M7.cycles_per_mac / CORTEX_M55.cycles_per_mac == pytest.approx(4.0)


def test_three_device_profiles():
    assert set(DEVICES) == {"mcu-qspi", "mcu-ram", "gateway"}
    assert MCU_QSPI.model_placement == "xip" and MCU_QSPI.adapter_storage.name == "sd-spi"
    assert MCU_RAM.model_placement == "ram" and MCU_RAM.adapter_storage is W25Q128JV
    assert GATEWAY.model_storage.name == "nvme" and GATEWAY.adapter_storage.name == "nvme"
    assert MCU_QSPI.sram_bytes == 512 * 1024 and MCU_QSPI.clock_hz == 480e6


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
