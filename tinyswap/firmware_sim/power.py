"""The power supply: the one owner of "is there power, and when does it fail".

Why one owner: a device such as `mcu-qspi` keeps its model and metadata on QSPI NOR and its
adapter store on an SD card. A real power cut stops both at the same instant, and an
MCUboot-style sweep ("count the N mutating operations of a clean run, then cut before / after
each one", mcu-tools/mcuboot `sim/src/image.rs` `run_perm_with_fails`) must number the
operations of the whole device, not of one part. So every `FlashDevice` is wired to a
`PowerSupply` (its own, or one shared by all the parts of a device) and asks it, at each
program or erase, whether this is the operation at which power fails. The supply numbers the
operations and decides when; the part only applies what a cut does to its medium (a torn
program lands a prefix of its bytes), because that physics belongs to the part.

Cut semantics (`CutPoint`): BEFORE (the operation never reaches the medium), AFTER (it
completes, then power is lost), TORN (only a prefix lands). Whatever the cut, every part on
the supply is off and `PowerLoss` is raised until `power_on()`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable

from tinyswap.firmware_sim.errors import FlashGeometryError, PowerLoss


class CutPoint(enum.Enum):
    BEFORE = "before"  # the op never reaches the medium (MCUboot replay)
    AFTER = "after"  # the op completes, then power is lost (littlefs replay)
    TORN = "torn"  # power is lost during the op: only a prefix lands


@dataclass(frozen=True)
class PowerCut:
    """Cut power at mutating operation `op` (1-based, counted from the supply's `arm`).

    For TORN, `keep` is how many bytes of the operation land (a program's data prefix, or the
    prefix of an erase range that reaches the erase value); None picks a point inside the
    middle write unit, so the cut ends inside a unit whenever the unit is wider than a byte.
    """

    op: int
    when: CutPoint = CutPoint.BEFORE
    keep: int | None = None

    def __post_init__(self) -> None:
        if self.op < 1:
            raise FlashGeometryError(f"power cut op index is 1-based, got {self.op}")
        if self.keep is not None and (self.when is not CutPoint.TORN or self.keep < 0):
            raise FlashGeometryError(f"keep={self.keep} only applies to a TORN cut and must be >= 0")


class PowerSupply:
    """Power state and the cut plan of every flash part wired to it.

    `mutations` counts the programs and erases that reached a powered part since the last
    `arm` (operations refused earlier, for misuse or because power was off, are not attempts).
    """

    def __init__(self) -> None:
        self.powered = True
        self.mutations = 0
        self._cuts: dict[int, PowerCut] = {}

    def arm(self, cuts: Iterable[PowerCut] = ()) -> None:
        """Cut power at these mutating operations, numbered from 1 after this call."""
        plan: dict[int, PowerCut] = {}
        for c in cuts:
            if c.op in plan:
                raise FlashGeometryError(f"two power cuts at the same operation: {c.op}")
            plan[c.op] = c
        self.mutations = 0
        self._cuts = plan

    def disarm(self) -> None:
        self.arm(())

    @property
    def pending(self) -> tuple[PowerCut, ...]:
        """Cuts armed and not yet reached, in operation order."""
        return tuple(self._cuts[k] for k in sorted(self._cuts))

    def cut(self) -> None:
        """Power is lost now: every part on the supply stops."""
        self.powered = False

    def power_on(self) -> None:
        """Restore power; the parts keep whatever reached them."""
        self.powered = True

    def check(self, what: str) -> None:
        """Refuse an operation while power is off."""
        if not self.powered:
            raise PowerLoss(f"{what} refused: power is off (call power_on())")

    def begin_mutation(self, what: str) -> PowerCut | None:
        """Number a program or erase that is about to reach the medium.

        A BEFORE cut at this number cuts power and raises `PowerLoss` (nothing lands); an
        AFTER or TORN cut is returned for the part to apply, then `end_mutation` cuts.
        """
        self.mutations += 1
        cut = self._cuts.pop(self.mutations, None)
        if cut is not None and cut.when is CutPoint.BEFORE:
            self.cut()
            raise PowerLoss(f"power cut before mutating op {self.mutations} ({what})")
        return cut

    def end_mutation(self, cut: PowerCut | None, what: str, error: Exception | None = None) -> None:
        """Finish an operation `begin_mutation` numbered: lose power if it was the cut point
        (chained to the operation's own failure, if it had one), else raise that failure."""
        if cut is not None:
            self.cut()
            raise PowerLoss(f"power cut {cut.when.value} mutating op {self.mutations} ({what})") from error
        if error is not None:
            raise error


__all__ = ["CutPoint", "PowerCut", "PowerSupply"]
