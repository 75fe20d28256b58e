"""The power supply: the one owner of when power fails, numbered across every part it feeds."""

from __future__ import annotations

import pytest

from tinyswap.firmware_sim.errors import FlashGeometryError, FlashMisuseError, InjectedWriteError, PowerLoss
from tinyswap.firmware_sim.flash import FailRange, FaultPlan, FlashDevice, FlashGeometry
from tinyswap.firmware_sim.power import CutPoint, PowerCut, PowerSupply


def two_parts() -> tuple[PowerSupply, FlashDevice, FlashDevice]:
    supply = PowerSupply()
    nor = FlashDevice(FlashGeometry.uniform(4096, 4, name="nor"), supply=supply)
    sd = FlashDevice(FlashGeometry.uniform(4096, 4, name="sd"), supply=supply)
    return supply, nor, sd


def test_a_part_without_a_supply_gets_its_own():
    a, b = FlashDevice(FlashGeometry.uniform(4096, 2)), FlashDevice(FlashGeometry.uniform(4096, 2))
    assert a.supply is not b.supply
    a.power_off()
    assert not a.powered and b.powered


def test_operations_are_numbered_across_parts_and_a_cut_stops_every_part():
    supply, nor, sd = two_parts()
    supply.arm([PowerCut(3)])
    nor.program(0, b"\x01")  # op 1
    sd.program(0, b"\x02")  # op 2
    with pytest.raises(PowerLoss, match="before mutating op 3"):
        nor.program(1, b"\x03")  # op 3: never lands
    assert not supply.powered and not nor.powered and not sd.powered
    with pytest.raises(PowerLoss, match="power is off"):
        sd.read(0, 1)
    assert supply.mutations == 3 and nor.mutations == sd.mutations == 3
    supply.power_on()
    assert nor.read(0, 2) == b"\x01\xff" and sd.read(0, 1) == b"\x02"


def test_after_and_torn_cuts_are_applied_by_the_part_that_was_writing():
    supply, nor, sd = two_parts()
    supply.arm([PowerCut(1, CutPoint.AFTER), PowerCut(2, CutPoint.TORN, keep=2)])
    with pytest.raises(PowerLoss, match="after mutating op 1"):
        sd.program(0, b"ABCD")
    assert not nor.powered  # the other part lost power too
    supply.power_on()
    with pytest.raises(PowerLoss, match="torn mutating op 2"):
        nor.program(0, b"WXYZ")
    supply.power_on()
    assert sd.read(0, 4) == b"ABCD" and nor.read(0, 4) == b"WX\xff\xff"
    assert supply.pending == ()


def test_refused_operations_are_not_attempts():
    supply, nor, _ = two_parts()
    supply.arm([PowerCut(2)])
    supply.cut()
    with pytest.raises(PowerLoss):
        nor.program(0, b"\x00")  # power off: not numbered
    supply.power_on()
    with pytest.raises(FlashMisuseError):
        nor.program(nor.size, b"\x00")  # outside the part: misuse, not numbered either
    nor.program(0, b"\x00")  # op 1
    assert supply.mutations == 1 and supply.pending == (PowerCut(2),)


def test_arming_a_part_arms_its_supply_and_keeps_the_failures_on_the_part():
    """One mechanism: the cuts of a part's fault plan go to the supply; its failure ranges stay
    with the part and survive a torn cut (which earlier re-armed the part and dropped them)."""
    supply, nor, sd = two_parts()
    nor.arm(FaultPlan(cuts=(PowerCut(2, CutPoint.TORN),), failures=(FailRange(8192, 12288, 1.0),)))
    assert supply.pending == (PowerCut(2, CutPoint.TORN),)
    sd.program(0, b"\x01")  # op 1, on the other part
    with pytest.raises(PowerLoss):
        nor.program(0, b"ABCDEFGH")  # op 2: torn
    supply.power_on()
    with pytest.raises(InjectedWriteError):
        nor.program(8192, b"\x00")  # the failing range is still in force
    assert nor.read(8192, 1) == b"\xff"


def test_cut_plans_are_validated():
    supply = PowerSupply()
    with pytest.raises(FlashGeometryError):
        supply.arm([PowerCut(2), PowerCut(2, CutPoint.AFTER)])
    supply.arm([PowerCut(5)])
    supply.disarm()
    assert supply.pending == () and supply.mutations == 0
