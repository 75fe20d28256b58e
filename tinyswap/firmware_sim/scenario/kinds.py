"""The step kinds that drive the device's update and power life cycle (everything but `infer`,
which has its own module). Each kind is one registration: fields, checks, handler, progress text.

`permanent` (default false) skips the trial: without it a change runs on trial and the next
boot reverts it unless a `confirm` step came first.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from tinyswap.firmware_sim.device import Device
from tinyswap.firmware_sim.flash import CutPoint, PowerCut
from tinyswap.firmware_sim.scenario.fields import BASE, ValueType, Where, param
from tinyswap.firmware_sim.scenario.registry import STEP_KINDS, Step, StepContext, StepParams, step_kind
from tinyswap.firmware_sim.scenario.report import active, boot_dict, secs
from tinyswap.package import parse_package

if TYPE_CHECKING:
    from tinyswap.firmware_sim.scenario.report import StepRecord
    from tinyswap.firmware_sim.scenario.runner import Run

_PERMANENT_DOC = "skip the trial: the change survives the next boot without a `confirm`"


def _permanent() -> Any:
    return param(ValueType.BOOL, default=False, doc=_PERMANENT_DOC)


def adapter_state(d: Device, name: str) -> dict[str, Any]:
    info = d.manager.adapter_info(name)
    state = d.manager.export_state()
    digest = state["adapters"][name]["current"]
    slot = next((s["slot"] for s in state["slots"] if s["digest"] == digest), None)
    return {"name": name, "version": info.version, "sequence": info.sequence, "digest": digest, "slot": slot}


def _describe_live(record: StepRecord) -> str:
    r = record.result
    if "name" not in r:
        return ""
    where = f"in slot {r['slot']}" if r["slot"] is not None else "stored, not in a slot (written on first use)"
    return f"{r['name']} {r['version']} {where}" + (" (trial)" if r.get("trial") else "")


@step_kind("install", target=("package",), example={"kind": "install", "package": "invert",
                                                    "note": "OTA arrival at night: verified, stored"})
@dataclass(frozen=True, kw_only=True)
class Install(StepParams):
    """OTA arrival: verify everything, then store the package (`Device.install`). Nothing is
    written to flash before the package passed every check."""

    package: str = param(ValueType.PACKAGE, doc="the label of a package (`packages` or `build.adapters`)")

    def run(self, run: Run, step: Step) -> dict[str, Any]:
        return asdict(run.device.install(run.packages[self.package]))

    def describe(self, record: StepRecord) -> str:
        r = record.result
        return f"{r['name']} {r['version']} " + ("stored" if r["stored"] else "already stored") if "name" in r else ""


@step_kind("update", target=("package",), example={"kind": "update", "package": "rot90", "permanent": True})
@dataclass(frozen=True, kw_only=True)
class Update(StepParams):
    """Install and bring live: a new name is loaded into a slot (or, with every slot taken,
    written on first use), a known name is hot-swapped to the new version (`Device.update`)."""

    package: str = param(ValueType.PACKAGE, doc="the label of a package")
    permanent: bool = _permanent()

    def run(self, run: Run, step: Step) -> dict[str, Any]:
        d = run.device
        data = run.packages[self.package]
        d.update(data, permanent=self.permanent)
        return {**adapter_state(d, parse_package(data).name), "trial": d.trial}

    def describe(self, record: StepRecord) -> str:
        return _describe_live(record)


@step_kind("swap", target=("package",), example={"kind": "swap", "package": "invert", "note": "brought live on trial"})
@dataclass(frozen=True, kw_only=True)
class Swap(StepParams):
    """Bring an installed package live (`Device.swap`)."""

    package: str = param(ValueType.PACKAGE, doc="the label of a package installed before")
    permanent: bool = _permanent()

    def run(self, run: Run, step: Step) -> dict[str, Any]:
        d = run.device
        pkg = parse_package(run.packages[self.package])
        d.swap(pkg.content_digest, permanent=self.permanent)
        return {**adapter_state(d, pkg.name), "trial": d.trial}

    def describe(self, record: StepRecord) -> str:
        return _describe_live(record)


@step_kind("activate", target=("adapters",), example={"kind": "activate", "adapters": {"cnn-invert": 1.0}})
@dataclass(frozen=True, kw_only=True)
class Activate(StepParams):
    """Set the default active set (the adapters rows run through when an `infer` step names none)."""

    adapters: Any = param(ValueType.ADAPTERS, doc=f'an adapter name, [names] or {{name: weight}}; "{BASE}" is none')
    permanent: bool = _permanent()

    def run(self, run: Run, step: Step) -> dict[str, Any]:
        run.device.activate(self.adapters, permanent=self.permanent)
        return {"active": active(run.device), "trial": run.device.trial}

    def describe(self, record: StepRecord) -> str:
        r = record.result
        if "active" not in r:
            return ""
        return ", ".join(f"{n}@{a['version']}" for n, a in (r["active"] or {}).items()) or BASE


@step_kind("confirm", example={"kind": "confirm", "note": "the health check passed"})
@dataclass(frozen=True, kw_only=True)
class Confirm(StepParams):
    """Make the trial state permanent (nothing happens when nothing is on trial)."""

    def run(self, run: Run, step: Step) -> dict[str, Any]:
        return {"confirmed": run.device.confirm()}

    def describe(self, record: StepRecord) -> str:
        return "confirmed" if record.result.get("confirmed") else "nothing on trial"


@step_kind("rollback", target=("name",), example={"kind": "rollback", "name": "cnn-invert", "permanent": True})
@dataclass(frozen=True, kw_only=True)
class Rollback(StepParams):
    """Back to the version accepted before (a gate flip when it is still in a slot)."""

    name: str = param(ValueType.NAME, doc="an adapter name")
    permanent: bool = _permanent()

    def run(self, run: Run, step: Step) -> dict[str, Any]:
        d = run.device
        d.rollback(self.name, permanent=self.permanent)
        return {**adapter_state(d, self.name), "trial": d.trial}

    def describe(self, record: StepRecord) -> str:
        return _describe_live(record)


@step_kind("delete", target=("name",), example={"kind": "delete", "name": "cnn-sensor", "permanent": True})
@dataclass(frozen=True, kw_only=True)
class Delete(StepParams):
    """Remove an adapter; its slots are cleared."""

    name: str = param(ValueType.NAME, doc="an adapter name")
    permanent: bool = _permanent()

    def run(self, run: Run, step: Step) -> dict[str, Any]:
        run.device.delete(self.name, permanent=self.permanent)
        return {"deleted": self.name, "trial": run.device.trial}

    def describe(self, record: StepRecord) -> str:
        return f"deleted {record.result.get('deleted')}"


@step_kind("prefetch", target=("name",), example={"kind": "prefetch", "name": "cnn-rot90"})
@dataclass(frozen=True, kw_only=True)
class Prefetch(StepParams):
    """Stage the adapter's package in the RAM cache (so a later swap reads no flash)."""

    name: str = param(ValueType.NAME, doc="an adapter name")

    def run(self, run: Run, step: Step) -> dict[str, Any]:
        run.device.prefetch(self.name)
        return {"prefetched": self.name, "cache_used": run.device.manager.cache.used}

    def describe(self, record: StepRecord) -> str:
        return f"{record.result.get('prefetched')} staged"


@step_kind("wait", flash_work=False, example={"kind": "wait", "seconds": "10min"})
@dataclass(frozen=True, kw_only=True)
class Wait(StepParams):
    """Advance the simulated clock (the device idles)."""

    seconds: float = param(ValueType.DURATION, doc="how long")

    def run(self, run: Run, step: Step) -> dict[str, Any]:
        run.device.timeline.advance(self.seconds, "wait", cat="idle", track="device")
        return {"seconds": self.seconds}

    def describe(self, record: StepRecord) -> str:
        return secs(record.result.get("seconds", 0.0))


class CutWhen(enum.Enum):
    """When a `power_cut` step cuts the power."""

    NOW = "now"  # between operations, right away
    BEFORE = CutPoint.BEFORE.value
    AFTER = CutPoint.AFTER.value
    TORN = CutPoint.TORN.value


@step_kind("power_cut", flash_work=False, example={"kind": "power_cut", "when": "torn", "op": 20,
                                                   "note": "the power fails in the middle of a write of the next step"})
@dataclass(frozen=True, kw_only=True)
class PowerCutStep(StepParams):
    """Cut the power. "now": between operations. "before" / "after" / "torn": before, after, or
    in the middle of the `op`-th mutating flash operation (program or erase, all flash parts of
    the device, counted from 1) of the NEXT step. Operation counts depend on the profile: each
    step's `mutating_ops` in the report tells where to aim. If the next step makes fewer,
    nothing happens and the report says so. Every later step needs power, so a `reboot`
    normally follows."""

    when: CutWhen = param(ValueType.CHOICE, choices=CutWhen, default=CutWhen.NOW, doc="when the power is lost")
    op: int | None = param(ValueType.INT, minimum=1, default=None,
                           doc="which mutating flash operation of the next step (from 1); required unless \"now\"")
    keep: int | None = param(ValueType.INT, minimum=0, default=None,
                             doc="torn only: how many bytes of the operation land (default: a point inside its "
                                 "middle write unit)")

    def check(self, where: Where, context: StepContext) -> None:
        if self.when is CutWhen.NOW:
            for name in ("op", "keep"):
                if getattr(self, name) is not None:
                    raise where.fail(name, "only for a cut at an operation of the next step (when: before/after/torn)")
            return
        if self.op is None:
            raise where.fail("op", "is missing (which mutating flash operation of the next step, from 1)")
        if self.keep is not None and self.when is not CutWhen.TORN:
            raise where.fail("keep", "only for when: torn")
        following = context.next_kind()
        if following is None or (following in STEP_KINDS and not STEP_KINDS[following].flash_work):
            raise where.fail("when", "a cut at an operation needs a next step that does flash work (not the last "
                                     "step, a wait or another power_cut)")

    def run(self, run: Run, step: Step) -> dict[str, Any]:
        d = run.device
        if self.when is CutWhen.NOW:
            if not d.power.powered:
                return {"when": "now", "note": "the power was already off"}
            d.power_cut()
            run.cuts.append({"step": step.index, "armed_by": step.index, "when": "now", "op": None,
                             "time_s": d.timeline.now, "message": "power cut between operations"})
            d.timeline.instant("power cut", cat="power", when="now", step=step.index)
            return {"when": "now", "fired": True, "time_s": d.timeline.now}
        assert self.op is not None  # `check` requires it
        cut = PowerCut(self.op, CutPoint(self.when.value), self.keep)
        run.pending_cut = (step.index, cut)
        return {"when": self.when.value, "op": cut.op, "keep": cut.keep, "armed_for_step": step.index + 1,
                "fired": False}

    def describe(self, record: StepRecord) -> str:
        r = record.result
        return "power off now" if r.get("when") == "now" else \
            f"armed: {r.get('when')} flash write {r.get('op')} of the next step"


@step_kind("reboot", example={"kind": "reboot", "note": "a watchdog reset before the health check"})
@dataclass(frozen=True, kw_only=True)
class Reboot(StepParams):
    """Power on (a power cycle when running: RAM is lost, a trial state reverts) and boot; the
    `BootReport` is recorded."""

    def run(self, run: Run, step: Step) -> dict[str, Any]:
        d = run.device
        cycled = d.power.powered and d.booted
        if cycled:
            d.power_cut()
        if not d.power.powered:
            d.power_on()
        d.timeline.instant("reboot", cat="power", step=step.index)
        report = d.boot()
        run.boots.append({"step": step.index, "time_s": d.timeline.now, **boot_dict(report)})
        return {"power_cycled": cycled, **boot_dict(report)}

    def describe(self, record: StepRecord) -> str:
        r = record.result
        if "reverted" not in r:
            return ""
        act = ", ".join(f"{n}@{a['version']}" for n, a in (record.active_after or {}).items()) or BASE
        disabled = r["restored"].get("disabled_slots") or []
        return ("reverted the trial; " if r["reverted"] else "") + f"active {act}" + \
            (f"; slots {disabled} disabled (bytes differ from the record)" if disabled else "") + \
            (f"; cleared slots {r['cleared_slots']}" if r["cleared_slots"] else "") + \
            "".join(f"; {e}" for e in r["errors"])


__all__ = ["Activate", "Confirm", "CutWhen", "Delete", "Install", "PowerCutStep", "Prefetch", "Reboot", "Rollback",
           "Swap", "Update", "Wait", "adapter_state"]
