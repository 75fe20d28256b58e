"""A fleet scenario: the fleet's make-up, the rollout policy, the faults to inject, the releases
and the federated rounds (format: docs/fleet-format.md).

Parsing only: every field is checked (type, range, known names) and the whole scenario is
refused with one `FleetScenarioError` naming the field before anything runs. Files are read
bounded (`tinyswap.files.read_json`).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from tinyswap.errors import InputFileError
from tinyswap.files import read_json
from tinyswap.fleet.errors import FleetScenarioError

DOMAINS = ("rot90", "mirror", "invert", "thick", "sensor", "shift")  # the digits bundle's adapters
PROFILES = ("mcu-qspi", "mcu-ram", "gateway")  # tinyswap.firmware_sim.profiles.DEVICES
MAX_DEVICES = 10_000_000
MAX_SCENARIO_BYTES = 1 << 20


class Aggregation(str, enum.Enum):
    """How the server combines the clients' LoRA factors (A_i, B_i)."""

    DELTAS = "deltas"  # mean of the effective deltas B_i A_i, refactored to the slot rank (SVD)
    FACTORS = "factors"  # mean of the A_i and mean of the B_i (FedAvg on factors)


@dataclass(frozen=True)
class LinkClass:
    name: str
    share: float  # fraction of the fleet on this link
    bytes_per_second: float
    loss: float  # probability that a 1 KiB packet is lost and sent again


@dataclass(frozen=True)
class Wave:
    name: str
    fraction: float  # cumulative fraction of the fleet targeted once this wave ran (lab: 0)
    lab_per_domain: int  # lab waves: tier-B devices per domain (0 for a fleet wave)
    soak_hours: float


@dataclass(frozen=True)
class Gate:
    min_install_success: float
    min_confirm_rate: float
    max_revert_rate: float
    max_accuracy_drop: float  # candidate minus current shadow accuracy, per domain, in [0, 1]
    min_rows: int  # a domain's gate needs at least this many shadow rows
    min_devices: int  # the rate checks apply once this many devices were targeted


@dataclass(frozen=True)
class Faults:
    power_cut_per_install: float
    max_attempts: int
    away_fraction: float  # devices offline from the start for `away_weeks`, back afterwards
    away_weeks: float
    online_per_wave: float  # chance that a present device is online during a wave's soak
    key_rotation: int | None  # the release before which the signing key rotates (None: never)


@dataclass(frozen=True)
class Release:
    name: str
    packages: tuple[tuple[str, str, int], ...]  # (domain, source, regression points): sorted by domain


@dataclass(frozen=True)
class Federated:
    domain: str
    rounds: int
    clients_per_round: int
    local_samples: int
    aggregation: Aggregation
    epochs: int
    clip_norm: float | None  # per-client delta norm clipped to this before aggregation (None: off)


@dataclass(frozen=True)
class FleetScenario:
    name: str
    seed: int
    devices: int
    tier_b: int
    shard_size: int
    holdout_rows: int
    profiles: tuple[tuple[str, float], ...]
    domains: tuple[tuple[str, float], ...]
    links: tuple[LinkClass, ...]
    waves: tuple[Wave, ...]
    gate: Gate
    faults: Faults
    releases: tuple[Release, ...]
    federated: Federated | None

    def with_devices(self, devices: int) -> FleetScenario:
        """The same scenario for another fleet size: tier B keeps its ratio to tier A, and at
        least the lab's rigs (`lab_per_domain` per domain)."""
        _check_int(devices, "devices", 1, MAX_DEVICES)
        lab = max((w.lab_per_domain for w in self.waves), default=0) * len(self.domains)
        tier_b = max(lab, 1, round(devices * self.tier_b / self.devices))
        return FleetScenario(**{**self.__dict__, "devices": devices, "tier_b": tier_b})

    @property
    def shards(self) -> int:
        return math.ceil(self.devices / self.shard_size)


# ------------------------------------------------------------------ checks
def _fail(message: str, field: str) -> FleetScenarioError:
    return FleetScenarioError(f"fleet scenario: {field}: {message}", field=field)


def _check_int(value: Any, field: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise _fail(f"must be an integer in [{lo}, {hi}], got {value!r}", field)
    return value


def _check_number(value: Any, field: str, lo: float, hi: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or not lo <= value <= hi:
        raise _fail(f"must be a number in [{lo}, {hi}], got {value!r}", field)
    return float(value)


def _check_object(value: Any, field: str, allowed: set[str], required: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _fail(f"must be an object, got {type(value).__name__}", field)
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _fail(f"unknown field(s) {unknown} (allowed: {sorted(allowed)})", field)
    missing = sorted(required - set(value))
    if missing:
        raise _fail(f"missing field(s) {missing}", field)
    return value


def _shares(value: Any, field: str, names: tuple[str, ...]) -> tuple[tuple[str, float], ...]:
    obj = _check_object(value, field, set(names), set())
    if not obj:
        raise _fail(f"needs at least one of {list(names)}", field)
    out = tuple((k, _check_number(obj[k], f"{field}.{k}", 0.0, 1.0)) for k in sorted(obj))
    if abs(sum(s for _, s in out) - 1.0) > 1e-6:
        raise _fail(f"shares must sum to 1, got {sum(s for _, s in out)}", field)
    return out


def _name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise _fail(f"must be a name of 1 to 64 characters, got {value!r}", field)
    return value


def _links(value: Any) -> tuple[LinkClass, ...]:
    obj = _check_object(value, "links", {k for k in value} if isinstance(value, dict) else set(), set())
    if not obj:
        raise _fail("needs at least one link class", "links")
    links = []
    for name in sorted(obj):
        f = f"links.{name}"
        o = _check_object(obj[name], f, {"share", "bytes_per_second", "loss"}, {"share", "bytes_per_second"})
        links.append(LinkClass(_name(name, f), _check_number(o["share"], f"{f}.share", 0.0, 1.0),
                               _check_number(o["bytes_per_second"], f"{f}.bytes_per_second", 1.0, 1e10),
                               _check_number(o.get("loss", 0.0), f"{f}.loss", 0.0, 0.9)))
    if abs(sum(link.share for link in links) - 1.0) > 1e-6:
        raise _fail("link shares must sum to 1", "links")
    return tuple(links)


def _waves(value: Any) -> tuple[Wave, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= 16:
        raise _fail("must be a list of 1 to 16 waves", "waves")
    waves, last = [], 0.0
    for i, raw in enumerate(value):
        f = f"waves[{i}]"
        o = _check_object(raw, f, {"name", "fraction", "lab_per_domain", "soak_hours"}, {"name", "soak_hours"})
        if ("fraction" in o) == ("lab_per_domain" in o):
            raise _fail("give either 'fraction' (a fleet wave) or 'lab_per_domain' (a lab wave)", f)
        if "lab_per_domain" in o:
            if waves and waves[-1].lab_per_domain == 0:
                raise _fail("lab waves come before fleet waves", f)
            lab, fraction = _check_int(o["lab_per_domain"], f"{f}.lab_per_domain", 1, 100), 0.0
        else:
            lab, fraction = 0, _check_number(o["fraction"], f"{f}.fraction", 0.0, 1.0)
            if fraction <= last:
                raise _fail(f"fractions are cumulative and must grow, got {fraction} after {last}", f"{f}.fraction")
            last = fraction
        waves.append(Wave(_name(o["name"], f"{f}.name"), fraction, lab,
                          _check_number(o["soak_hours"], f"{f}.soak_hours", 0.0, 24 * 365)))
    if last != 1.0:
        raise _fail("the last fleet wave must reach fraction 1.0", "waves")
    return tuple(waves)


def _gate(value: Any) -> Gate:
    fields = {"min_install_success", "min_confirm_rate", "max_revert_rate", "max_accuracy_drop", "min_rows"}
    o = _check_object(value, "gate", fields | {"min_devices"}, fields)
    return Gate(*(_check_number(o[k], f"gate.{k}", 0.0, 1.0) for k in
                  ("min_install_success", "min_confirm_rate", "max_revert_rate", "max_accuracy_drop")),
                _check_int(o["min_rows"], "gate.min_rows", 1, 1_000_000),
                _check_int(o.get("min_devices", 50), "gate.min_devices", 1, 1_000_000))


def _faults(value: Any, releases: int, waves: int) -> Faults:
    fields = {"power_cut_per_install", "max_attempts", "away_fraction", "away_weeks", "online_per_wave",
              "key_rotation"}
    o = _check_object(value, "faults", fields, set())
    rotation = None
    if o.get("key_rotation") is not None:
        rotation = _check_int(o["key_rotation"], "faults.key_rotation", 1, releases - 1) if releases > 1 else \
            _check_int(o["key_rotation"], "faults.key_rotation", 1, 0)
    return Faults(_check_number(o.get("power_cut_per_install", 0.0), "faults.power_cut_per_install", 0.0, 0.5),
                  _check_int(o.get("max_attempts", 3), "faults.max_attempts", 1, 10),
                  _check_number(o.get("away_fraction", 0.0), "faults.away_fraction", 0.0, 0.5),
                  _check_number(o.get("away_weeks", 0.0), "faults.away_weeks", 0.0, 104.0),
                  _check_number(o.get("online_per_wave", 1.0), "faults.online_per_wave", 0.05, 1.0), rotation)


SOURCES = ("committed", "federated", "bad")


def _releases(value: Any, federated: bool) -> tuple[Release, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= 16:
        raise _fail("must be a list of 1 to 16 releases", "releases")
    out = []
    for i, raw in enumerate(value):
        f = f"releases[{i}]"
        o = _check_object(raw, f, {"name", "packages"}, {"name", "packages"})
        pk = _check_object(o["packages"], f"{f}.packages", set(DOMAINS), set())
        if not pk:
            raise _fail(f"needs at least one domain of {list(DOMAINS)}", f"{f}.packages")
        packages = []
        for domain in sorted(pk):
            src = pk[domain]
            g = f"{f}.packages.{domain}"
            if isinstance(src, dict):
                s = _check_object(src, g, {"bad"}, {"bad"})
                packages.append((domain, "bad", _check_int(s["bad"], f"{g}.bad", 1, 50)))
            elif src in ("committed", "federated"):
                if src == "federated" and not federated:
                    raise _fail("'federated' needs the scenario's 'federated' section", g)
                packages.append((domain, src, 0))
            else:
                raise _fail(f"must be 'committed', 'federated' or {{\"bad\": POINTS}}, got {src!r}", g)
        out.append(Release(_name(o["name"], f"{f}.name"), tuple(packages)))
    return tuple(out)


def _federated(value: Any, domains: tuple[str, ...]) -> Federated:
    fields = {"domain", "rounds", "clients_per_round", "local_samples", "aggregation", "epochs", "clip_norm"}
    o = _check_object(value, "federated", fields, {"domain", "rounds", "clients_per_round"})
    if o["domain"] not in domains:
        raise _fail(f"must be one of the fleet's domains {list(domains)}, got {o['domain']!r}", "federated.domain")
    try:
        aggregation = Aggregation(o.get("aggregation", "deltas"))
    except ValueError:
        raise _fail(f"must be one of {[a.value for a in Aggregation]}", "federated.aggregation") from None
    clip = o.get("clip_norm")
    return Federated(o["domain"], _check_int(o["rounds"], "federated.rounds", 1, 100),
                     _check_int(o["clients_per_round"], "federated.clients_per_round", 1, 10_000),
                     _check_int(o.get("local_samples", 60), "federated.local_samples", 16, 256), aggregation,
                     _check_int(o.get("epochs", 30), "federated.epochs", 1, 200),
                     None if clip is None else _check_number(clip, "federated.clip_norm", 1e-6, 1e6))


TOP = {"name", "seed", "devices", "tier_b", "shard_size", "holdout_rows", "profiles", "domains", "links", "waves",
       "gate", "faults", "releases", "federated"}


def parse_fleet_scenario(raw: Any) -> FleetScenario:
    """A checked `FleetScenario` from parsed JSON, or one `FleetScenarioError`."""
    o = _check_object(raw, "scenario", TOP, {"seed", "devices", "profiles", "domains", "links", "waves", "gate",
                                             "releases"})
    devices = _check_int(o["devices"], "devices", 1, MAX_DEVICES)
    domains = _shares(o["domains"], "domains", DOMAINS)
    waves = _waves(o["waves"])
    federated = None if o.get("federated") is None else _federated(o["federated"], tuple(d for d, _ in domains))
    releases = _releases(o["releases"], federated is not None)
    fleet_domains = {d for d, s in domains if s > 0}
    for i, release in enumerate(releases):
        for domain, _, _ in release.packages:
            if domain not in fleet_domains:
                raise _fail(f"domain {domain!r} has no devices in this fleet", f"releases[{i}].packages.{domain}")
    return FleetScenario(
        name=_name(o.get("name", "fleet"), "name"), seed=_check_int(o["seed"], "seed", 0, 2**63 - 1),
        devices=devices, tier_b=_check_int(o.get("tier_b", max(1, devices // 100)), "tier_b", 1, 100_000),
        shard_size=_check_int(o.get("shard_size", 10_000), "shard_size", 100, 1_000_000),
        holdout_rows=_check_int(o.get("holdout_rows", 16), "holdout_rows", 1, 540),
        profiles=_shares(o["profiles"], "profiles", PROFILES), domains=domains, links=_links(o["links"]),
        waves=waves, gate=_gate(o["gate"]), faults=_faults(o.get("faults", {}), len(releases), len(waves)),
        releases=releases, federated=federated)


def load_fleet_scenario(path: str | Path) -> FleetScenario:
    """Read (bounded) and parse a fleet scenario file."""
    try:
        raw = read_json(path, "fleet scenario", max_bytes=MAX_SCENARIO_BYTES)
    except InputFileError as exc:
        raise FleetScenarioError(str(exc), field=None) from exc
    return parse_fleet_scenario(raw)


__all__ = ["DOMAINS", "PROFILES", "Aggregation", "Faults", "Federated", "FleetScenario", "Gate", "LinkClass",
           "Release", "Wave", "load_fleet_scenario", "parse_fleet_scenario"]
