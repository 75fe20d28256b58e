"""`tinyswap bench --swap`: adapter switching in tinyswap beside PEFT's `hotswap_adapter`.

Same layer shapes on both sides: a 64-128-64-10 MLP (models/examples/mlp) with a rank-8 LoRA
on every layer; tinyswap's model has S = 2 slots (int8, gates), PEFT's is a float torch model
on the CPU. Host wall clock. Rows:

(a) switch between two adapters already resident in slots (`set_adapter`: a gate flip);
(b) hot swap of a cached, verified package into a slot (`make_resident` with three adapters
    rotating through two slots: every call writes a slot, reads it back and compares it);
(c) cold swap from a package file (`hotswap_adapter(name, path)`: read, SHA-256, Ed25519
    signature, base binding, anti-rollback, slot write and read-back verification; then,
    untimed, `prune_versions` keeps the two newest versions, as a device does, so that the
    history does not grow with the number of repetitions);
each against PEFT's `peft.utils.hotswap.hotswap_adapter(model, path, "default")` from a
`save_pretrained` directory, PEFT's way to replace a loaded adapter in place: it reads the
adapter's config and checks it against the loaded one, loads the safetensors weights from
disk, renames the keys and copies every tensor into the existing LoRA modules (no signature,
no read-back). That is the target of every row. For like with like, two PEFT calls are timed
beside it: `set_adapter` between two adapters loaded in one model (the analogue of (a)) and
`hotswap_adapter_from_state_dict` from a state dict already in RAM (of (b): no file, no config).

Protocol: the operations take turns in blocks of `BLOCK` consecutive calls (ours, then
PEFT's, ...), round after round, so machine noise hits every side alike; within a block the
calls run back to back. Why blocks rather than single calls: PEFT's call reads files and
allocates torch tensors, and the first tiny call after it runs on cold caches (measured: a
gate flip 2.7 us warm, 50 us right after PEFT's call or a 3 ms sleep), whereas PEFT's own call
never follows anything heavy; blocks give both sides the same mostly warm state. Per round,
the speed-up is the median of PEFT's block over the median of ours; a row shows the median
over all calls of each side, the median speed-up over the rounds and its p10-p90 spread.
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


@dataclass(frozen=True)
class PeftCalls:
    """PEFT's side: the target call and its like-for-like analogues (each takes the call index)."""

    hotswap: Callable[[int], None]  # hotswap_adapter from a directory
    set_adapter: Callable[[int], None]  # switch between two loaded adapters
    from_state_dict: Callable[[int], None]  # hotswap_adapter_from_state_dict, weights in RAM


def _peft_setup(tmp: Path) -> tuple[PeftCalls, str] | tuple[None, str]:
    try:
        import peft
        import torch
        from peft.utils.hotswap import hotswap_adapter, hotswap_adapter_from_state_dict
        from peft.utils.save_and_load import load_peft_weights
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
    config = None
    for i in range(2):
        config = peft.LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=[l for l, _, _ in LAYERS],
                                 init_lora_weights=False)
        model = peft.get_peft_model(MLP(), config)
        path = tmp / f"peft_{i}"
        model.save_pretrained(str(path))
        dirs.append(str(path))
    live = peft.PeftModel.from_pretrained(MLP(), dirs[0])
    switching = peft.PeftModel.from_pretrained(MLP(), dirs[0])
    switching.load_adapter(dirs[1], adapter_name="other")
    from_ram = peft.PeftModel.from_pretrained(MLP(), dirs[0])
    # The state dicts as hotswap_adapter builds them (its key renaming), loaded once.
    states = [{k.replace("lora_A.weight", "lora_A.default.weight").replace("lora_B.weight", "lora_B.default.weight"): v
               for k, v in load_peft_weights(d, device="cpu").items()} for d in dirs]

    def swap(i: int) -> None:
        hotswap_adapter(live, dirs[(i + 1) % 2], adapter_name="default", torch_device="cpu")

    def switch(i: int) -> None:
        switching.set_adapter(("other", "default")[i % 2])

    def from_state(i: int) -> None:
        hotswap_adapter_from_state_dict(from_ram, states[(i + 1) % 2], "default", config)

    return PeftCalls(swap, switch, from_state), f"peft {peft.__version__}, torch {torch.__version__}"


BLOCK = 5  # consecutive calls of one operation before the next takes its turn


@dataclass(frozen=True)
class SwapRow:
    operation: str
    tinyswap_us: float
    peft_us: float | None  # None: PEFT is not installed
    speedup: float | None  # median over the rounds of PEFT's block median / ours
    target: float  # the speed-up over PEFT's hotswap_adapter this operation is meant to reach
    met: bool | None
    tinyswap_p10_us: float | None = None
    tinyswap_p90_us: float | None = None
    speedup_p10: float | None = None  # spread of the per-round speed-up
    speedup_p90: float | None = None
    like_peft_call: str | None = None  # PEFT's analogue of this operation
    like_peft_us: float | None = None
    like_speedup: float | None = None


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
        def us(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}"

        def x(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}x"

        lines = [f"Swap benchmark ({self.repeats} interleaved repeats in blocks of {BLOCK}, host wall clock, medians; "
                 f"{self.peft})", "",
                 "| operation | tinyswap us (p10-p90) | PEFT hotswap_adapter us | speed-up vs PEFT (p10-p90 of rounds) "
                 "| target | PEFT's like-for-like call | its us | speed-up vs it |",
                 "|---|---:|---:|---:|---:|---|---:|---:|"]
        for r in self.rows:
            spread = "" if r.tinyswap_p10_us is None else f" ({r.tinyswap_p10_us:.1f}-{r.tinyswap_p90_us:.1f})"
            ratio = x(r.speedup) + ("" if r.speedup_p10 is None else f" ({r.speedup_p10:.1f}-{r.speedup_p90:.1f})")
            lines.append(f"| {r.operation} | {r.tinyswap_us:.1f}{spread} | {us(r.peft_us)} | {ratio} | "
                         f">= {r.target:g}x | {r.like_peft_call or '-'} | {us(r.like_peft_us)} | {x(r.like_speedup)} |")
        return "\n".join(lines)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def _timed_rounds(cases: dict[str, Callable[[int], Any]], repeats: int,
                  untimed: dict[str, Callable[[int], Any]]) -> dict[str, list[list[float]]]:
    """Per operation, per round, the seconds of its block of calls (see the module docstring)."""
    rounds: dict[str, list[list[float]]] = {k: [] for k in cases}
    calls = {k: 0 for k in cases}
    for _ in range(-(-repeats // BLOCK)):
        for label, fn in cases.items():
            block = []
            after = untimed.get(label)
            for _ in range(BLOCK):
                i = calls[label]
                start = time.perf_counter()
                fn(i)
                block.append(time.perf_counter() - start)
                calls[label] = i + 1
                if after is not None:
                    after(i)
            rounds[label].append(block)
    return rounds


def run(out_dir: Path, repeats: int = 200) -> SwapReport:
    """Time (a), (b), (c) and PEFT's calls, interleaved in blocks; write bench_swap.json and .md."""
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
    calls = -(-repeats // BLOCK) * BLOCK
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files = []
        for i in range(calls):  # (c) needs a new sequence number per swap (anti-rollback)
            path = tmp / f"cold_{i}.tsap"
            path.write_bytes(pack(_lora(100 + i % 2, "cold", i + 2), smap, key)[0])
            files.append(path)
        cold.load_adapter(pack(_lora(99, "cold", 1), smap, key)[0])
        peft_calls, peft_note = _peft_setup(tmp)
        cases: dict[str, Callable[[int], Any]] = {
            "a": lambda i: switcher.set_adapter("AB"[i % 2]),
            "b": lambda i: rotator.make_resident("ABC"[i % 3]),
            "c": lambda i: cold.hotswap_adapter("cold", files[i]),
        }
        if peft_calls is not None:
            cases.update(peft=peft_calls.hotswap, peft_switch=peft_calls.set_adapter,
                         peft_state=peft_calls.from_state_dict)
        rounds = _timed_rounds(cases, repeats, {"c": lambda i: cold.prune_versions("cold", keep=2)})
    flat = {k: [t for block in v for t in block] for k, v in rounds.items()}
    med = {k: float(np.median(v)) * 1e6 for k, v in flat.items()}
    rows = [
        ("(a) switch between resident adapters (set_adapter, gate flip)", "a", 100.0,
         "set_adapter between two loaded adapters", "peft_switch"),
        ("(b) hot swap of a cached, verified package into a slot", "b", 30.0,
         "hotswap_adapter_from_state_dict, weights in RAM", "peft_state"),
        ("(c) cold swap from a package file, signature verified", "c", 3.0, None, None),
    ]
    if switcher.stats["swaps"] != 2:  # a benchmark of the wrong thing is worse than none
        raise BenchmarkError(f"(a) wrote slots: {switcher.stats['swaps']} swaps where 2 loads were expected")
    table = []
    for title, key_, target, like_call, like_key in rows:
        ours = med[key_]
        theirs = med.get("peft")
        ratio = p10 = p90 = like_us = like_ratio = None
        if theirs:
            per_round = [float(np.median(p) / np.median(o)) for o, p in zip(rounds[key_], rounds["peft"])]
            ratio, p10, p90 = float(np.median(per_round)), _percentile(per_round, 10), _percentile(per_round, 90)
            if like_key is not None:
                like_us = med[like_key]
                like_ratio = float(np.median([np.median(p) / np.median(o)
                                              for o, p in zip(rounds[key_], rounds[like_key])]))
        table.append(SwapRow(title, ours, theirs, ratio, target, None if ratio is None else ratio >= target,
                             _percentile(flat[key_], 10) * 1e6, _percentile(flat[key_], 90) * 1e6, p10, p90,
                             like_call if theirs else None, like_us, like_ratio))
    report = SwapReport(time.strftime("%Y-%m-%d"), platform.processor() or platform.machine(),
                        platform.python_version(), calls, peft_note, med, smap["slots"][0]["length"], table)
    (out_dir / "bench_swap.json").write_text(json.dumps(asdict(report), indent=2))
    (out_dir / "bench_swap.md").write_text(report.text + "\n")
    return report


__all__ = ["BLOCK", "PeftCalls", "SwapReport", "SwapRow", "run"]
