"""`tinyswap bench --swap`: adapter switching in tinyswap beside PEFT's `hotswap_adapter`.

Same layer shapes on both sides: a 64-128-64-10 MLP (models/examples/mlp) with a rank-8 LoRA
on every layer; tinyswap's model has S = 2 slots (int8, gates), PEFT's is a float torch model
on the CPU. Host wall clock, medians, interleaved repetition by repetition so that machine
noise hits both sides alike. Rows:

(a) switch between two adapters already resident in slots (`set_adapter`: a gate flip);
(b) hot swap of a cached, verified package into a slot (`make_resident` with three adapters
    rotating through two slots: every call writes a slot, reads it back, verifies its digest);
(c) cold swap from a package file (`hotswap_adapter(name, path)`: read, SHA-256, Ed25519
    signature, base binding, anti-rollback, slot write and read-back verification);
each against PEFT's `peft.utils.hotswap.hotswap_adapter(model, path, "default")` from a
`save_pretrained` directory (what PEFT offers to replace a loaded adapter in place).
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinyswap.benchmarks.errors import BenchmarkError
from tinyswap.export.adapter_source import FloatAdapter, Lora
from tinyswap.export.build import build_bundle
from tinyswap.export.pack import pack
from tinyswap.export.slot_plan import SlotPlan, SlotTarget
from tinyswap.export.spec import load_spec
from tinyswap.package import Keyring
from tinyswap.resources import models_dir
from tinyswap.swap import SwapManager

EXAMPLES = models_dir() / "examples"
LAYERS = (("fc1", 64, 128), ("fc2", 128, 64), ("fc3", 64, 10))
RANK = 8


def _lora(seed: int, name: str, sequence: int) -> FloatAdapter:
    rng = np.random.default_rng(seed)
    targets = {layer: Lora(rng.uniform(-2, 2, (RANK, k)) / np.sqrt(k), rng.standard_normal((n, RANK)) * 0.02, 2.0)
               for layer, k, n in LAYERS}
    return FloatAdapter(name, f"1.{sequence}", sequence, {}, targets)


def _peft_setup(tmp: Path) -> tuple[Callable[[int], None], str] | tuple[None, str]:
    try:
        import peft
        import torch
        from peft.utils.hotswap import hotswap_adapter
    except ImportError as exc:
        return None, f"peft not installed ({exc.name}): pip install 'tinyswap[peft]'"
    torch.manual_seed(0)
    # One intra-op thread: the tensors are tiny, and idle OpenMP workers spin on the second of
    # the two cores, which would slow down whatever runs next (measured: tinyswap's rows 3x).
    torch.set_num_threads(1)

    class MLP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2, self.fc3 = (torch.nn.Linear(k, n) for _, k, n in LAYERS)

        def forward(self, x):  # pragma: no cover - only the weights are swapped here
            return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))

    dirs = []
    for i in range(2):
        config = peft.LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=[l for l, _, _ in LAYERS],
                                 init_lora_weights=False)
        model = peft.get_peft_model(MLP(), config)
        path = tmp / f"peft_{i}"
        model.save_pretrained(str(path))
        dirs.append(str(path))
    live = peft.PeftModel.from_pretrained(MLP(), dirs[0])

    def swap(i: int) -> None:
        hotswap_adapter(live, dirs[(i + 1) % 2], adapter_name="default", torch_device="cpu")

    return swap, f"peft {peft.__version__}, torch {torch.__version__}"


@dataclass(frozen=True)
class SwapRow:
    operation: str
    tinyswap_us: float
    peft_us: float | None  # None: PEFT is not installed
    speedup: float | None
    target: float  # the speed-up over PEFT this operation is meant to reach
    met: bool | None


@dataclass(frozen=True)
class SwapReport:
    date: str
    machine: str
    python: str
    repeats: int
    peft: str  # PEFT and torch versions, or why PEFT did not run
    median_us: dict[str, float]
    slot_bytes: int
    rows: list[SwapRow]

    @property
    def text(self) -> str:
        """What `tinyswap bench --swap` prints and bench_swap.md holds."""
        lines = [f"Swap benchmark ({self.repeats} interleaved repeats, host wall clock, medians; {self.peft})", "",
                 "| operation | tinyswap us | PEFT hotswap_adapter us | speed-up vs PEFT | target |",
                 "|---|---:|---:|---:|---:|"]
        for r in self.rows:
            lines.append(f"| {r.operation} | {r.tinyswap_us:.1f} | {'-' if r.peft_us is None else f'{r.peft_us:.1f}'} | "
                         f"{'-' if r.speedup is None else f'{r.speedup:.1f}x'} | >= {r.target:g}x |")
        return "\n".join(lines)


def run(out_dir: Path, repeats: int = 200) -> SwapReport:
    """Time (a), (b), (c) and PEFT's hot swap, interleaved; write bench_swap.json and .md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = load_spec(EXAMPLES / "mlp.json")
    plan = SlotPlan(targets=tuple(SlotTarget(l, "lora", RANK) for l, _, _ in LAYERS), num_slots=2)
    built = build_bundle(spec, plan, np.load(EXAMPLES / "mlp.calibration.npy"))
    smap = built.slotmap
    key = Ed25519PrivateKey.generate()
    packages = {n: pack(_lora(i, n, 1), smap, key)[0] for i, n in enumerate("ABC")}
    # One manager per row, each on its own image, so that one row's swaps do not change what
    # another row finds resident.
    keyring = Keyring([key.public_key()])
    switcher, rotator, cold = (SwapManager(bytearray(built.data), smap, keyring) for _ in range(3))
    for name in "AB":
        switcher.load_adapter(packages[name])
    for name in "ABC":
        rotator.load_adapter(packages[name])
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files = []
        for i in range(repeats):  # (c) needs a new sequence number per swap (anti-rollback)
            path = tmp / f"cold_{i}.tsap"
            path.write_bytes(pack(_lora(100 + i % 2, "cold", i + 2), smap, key)[0])
            files.append(path)
        cold.load_adapter(pack(_lora(99, "cold", 1), smap, key)[0])
        peft_swap, peft_note = _peft_setup(tmp)
        timings: dict[str, list[float]] = {"a": [], "b": [], "c": [], "peft": []}
        cases: dict[str, Callable[[int], Any]] = {
            "a": lambda i: switcher.set_adapter("AB"[i % 2]),
            "b": lambda i: rotator.make_resident("ABC"[i % 3]),
            "c": lambda i: cold.hotswap_adapter("cold", files[i]),
        }
        if peft_swap is not None:
            cases["peft"] = peft_swap
        for i in range(repeats):
            for label, fn in cases.items():
                start = time.perf_counter()
                fn(i)
                timings[label].append(time.perf_counter() - start)
    med = {k: float(np.median(v)) * 1e6 for k, v in timings.items() if v}
    rows = [
        ("(a) switch between resident adapters (set_adapter, gate flip)", "a", 100.0),
        ("(b) hot swap of a cached, verified package into a slot", "b", 20.0),
        ("(c) cold swap from a package file, signature verified", "c", 1.0),
    ]
    if switcher.stats["swaps"] != 2:  # a benchmark of the wrong thing is worse than none
        raise BenchmarkError(f"(a) wrote slots: {switcher.stats['swaps']} swaps where 2 loads were expected")
    table = []
    for title, key_, target in rows:
        ours = med[key_]
        theirs = med.get("peft")
        ratio = theirs / ours if theirs else None
        table.append(SwapRow(title, ours, theirs, ratio, target, None if ratio is None else ratio >= target))
    report = SwapReport(time.strftime("%Y-%m-%d"), platform.processor() or platform.machine(),
                        platform.python_version(), repeats, peft_note, med, smap["slots"][0]["length"], table)
    (out_dir / "bench_swap.json").write_text(json.dumps(asdict(report), indent=2))
    (out_dir / "bench_swap.md").write_text(report.text + "\n")
    return report


__all__ = ["SwapReport", "SwapRow", "run"]
