"""Arm's Vela compiler, driven in-process: one `.tflite` in, Vela's `.tflite` and its summary out.

Vela (`ethos-u-vela`, the `npu` extra) is imported only when a compile is asked for, so the
rest of the compiler works without it; a missing Vela is `VelaNotInstalledError`, naming the
extra. Each run writes into its own temporary directory; its per-run summary CSV (the same
figures Vela prints) is read back into `VelaSummary`. Runs are cached per process by the input's
SHA-256 and the configuration: the same segment compiles once however many bundles use it.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from tinyswap.export.npu.config import NpuConfig
from tinyswap.export.npu.errors import VelaCompileError, VelaNotInstalledError
from tinyswap.reader import read_model

ETHOS_U_CUSTOM_CODE = "ethos-u"
_LOCK = threading.Lock()  # Vela keeps module-level state; one compile at a time per process
_CACHE: dict[tuple[str, NpuConfig], "VelaRun"] = {}


def vela_version() -> str | None:
    """The installed Vela's version, or None when the `npu` extra is not installed."""
    try:
        from ethosu.vela import __version__
    except ImportError:
        return None
    return str(__version__)


def require_vela() -> str:
    """The installed Vela's version; `VelaNotInstalledError` (naming the `npu` extra) without it."""
    version = vela_version()
    if version is None:
        raise VelaNotInstalledError()
    return version


#: Vela's memory areas, as its summary CSV names their `<area>_memory_used` columns (KiB).
MEMORY_AREAS = (("SRAM", "sram"), ("DRAM", "dram"), ("on-chip flash", "on_chip_flash"),
                ("off-chip flash", "off_chip_flash"))


@dataclass(frozen=True)
class VelaSummary:
    """Vela's estimates for one compiled network (its summary CSV, batch 1).

    macs: `nn_macs`, the MACs Vela placed on the NPU; cycles_npu / cycles_total: its NPU and
    total (memory-bound) cycle estimates at `clock_hz`; memory_kib: (area, KiB used) for every
    area Vela uses (SRAM, DRAM, on-chip or off-chip flash; where weights and feature maps live is
    the system configuration's choice: `weights_area`, `feature_map_area`); encoded_weight_bytes:
    its compressed weight stream; system_config: the one Vela assumed (its default for the
    accelerator unless one is given)."""

    macs: int
    cycles_npu: int
    cycles_total: int
    memory_kib: tuple[tuple[str, float], ...]
    weights_area: str
    feature_map_area: str
    encoded_weight_bytes: int
    clock_hz: float
    system_config: str

    def memory_text(self) -> str:
        """E.g. "SRAM 2.00 + off-chip flash 5.78" (KiB, areas in use only)."""
        return " + ".join(f"{area} {kib:.2f}" for area, kib in self.memory_kib) or "0"


@dataclass(frozen=True)
class VelaRun:
    """One Vela compile: what went in (its digest), what came out, and Vela's figures."""

    config: NpuConfig
    input_sha256: str
    output: bytes  # Vela's `<name>_vela.tflite`
    summary: VelaSummary
    npu_operators: int  # `ethos-u` custom operators in the output
    cpu_operators: int  # every other operator Vela left for the CPU
    version: str


def _summary(path: Path) -> VelaSummary:
    with path.open(newline="") as f:
        row = next(csv.DictReader(f))
    memory = tuple((area, float(row[f"{column}_memory_used"])) for area, column in MEMORY_AREAS
                   if float(row[f"{column}_memory_used"]) > 0)
    return VelaSummary(
        macs=int(float(row["nn_macs"])), cycles_npu=int(float(row["cycles_npu"])),
        cycles_total=int(float(row["cycles_total"])), memory_kib=memory, weights_area=row["weights_storage_area"],
        feature_map_area=row["feature_map_storage_area"],
        encoded_weight_bytes=int(float(row["total_npu_encoded_weights"])), clock_hz=float(row["core_clock"]),
        system_config=row["system_config"])


def compile_with_vela(model: bytes, config: NpuConfig, name: str = "segment") -> VelaRun:
    """Compile `model` for `config` with Vela's defaults for that accelerator; cached per process.
    `VelaCompileError` carries Vela's own output when it fails."""
    version = require_vela()
    from ethosu.vela.vela import main as vela_main

    digest = hashlib.sha256(model).hexdigest()
    key = (digest, config)
    with _LOCK:
        found = _CACHE.get(key)
        if found is not None:
            return found
        with tempfile.TemporaryDirectory(prefix="tinyswap-vela-") as tmp:
            src = Path(tmp) / f"{name}.tflite"
            src.write_bytes(model)
            out_dir = Path(tmp) / "out"
            said = io.StringIO()
            try:
                with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
                    code = vela_main([str(src), "--accelerator-config", config.value, "--output-dir", str(out_dir)])
            except (Exception, SystemExit) as exc:  # Vela reports misuse by raising or exiting
                raise VelaCompileError(f"Vela {version} failed on {name} for {config}: {exc}\n"
                                       f"{said.getvalue()[-2000:]}") from exc
            output = out_dir / f"{name}_vela.tflite"
            summaries = sorted(out_dir.glob(f"{name}_summary_*.csv"))
            if code != 0 or not output.exists() or not summaries:
                raise VelaCompileError(f"Vela {version} exited with {code} on {name} for {config}:\n"
                                       f"{said.getvalue()[-2000:]}")
            data = output.read_bytes()
            summary = _summary(summaries[0])
        parsed = read_model(data)
        npu = sum(op.op_name == f"CUSTOM:{ETHOS_U_CUSTOM_CODE}" for op in parsed.main.operators)
        run = VelaRun(config, digest, data, summary, npu, len(parsed.main.operators) - npu, version)
        _CACHE[key] = run
        return run


__all__ = ["ETHOS_U_CUSTOM_CODE", "VelaRun", "VelaSummary", "compile_with_vela", "require_vela", "vela_version"]
