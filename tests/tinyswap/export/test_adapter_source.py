"""Adapter sources: tinyswap's directory format and PEFT LoRA directories.

The PEFT interop test builds the adapter with the real `peft` library (`get_peft_model`,
`save_pretrained`) on a torch MLP that carries the example model's float weights, imports the
directory, packs it into the example bundle (headroom on) and holds the quantized effect to
the float `W + (alpha / r) B A`: per layer, the dequantized slot delta within 5% (relative
Frobenius error), and end to end, the INT8 model with the adapter's gate at 1 within the
fidelity bounds of tests/export/test_fidelity.py of the float PEFT model's probabilities.
`peft` and `torch` come with the `peft` extra (scripts/setup.sh installs it); without them the
real-library test is skipped visibly and the hand-written-layout tests still run.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from tinyswap.export.adapter_source import AdapterSourceError, Bottleneck, Lora, load_adapter
from tinyswap.export.pack import PackError, pack
from tinyswap.package import Keyring, parse_package
from tinyswap.quantize import quantize_int8
from tinyswap.swap import SwapManager

from tests.adapter_cases import EXAMPLES, KEY, example_bundle


def write_peft_dir(path, modules: dict[str, tuple[np.ndarray, np.ndarray]], r: int = 4, alpha: float = 8.0,
                   **config) -> None:
    """The files `save_pretrained` writes: adapter_config.json and adapter_model.safetensors,
    keys `base_model.model.<module>.lora_A.weight` [r, in] and `...lora_B.weight` [out, r]."""
    path.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for module, (a, b) in modules.items():
        tensors[f"base_model.model.{module}.lora_A.weight"] = a.astype(np.float32)
        tensors[f"base_model.model.{module}.lora_B.weight"] = b.astype(np.float32)
    save_file(tensors, str(path / "adapter_model.safetensors"))
    cfg = {"peft_type": "LORA", "r": r, "lora_alpha": alpha, "target_modules": sorted(modules), "bias": "none",
           "use_rslora": False, "use_dora": False, "rank_pattern": {}, "alpha_pattern": {}, "modules_to_save": None,
           "fan_in_fan_out": False, "lora_dropout": 0.0, "base_model_name_or_path": None, "task_type": None}
    cfg.update(config)
    (path / "adapter_config.json").write_text(json.dumps(cfg))


def test_peft_layout_imports_with_scaling_patterns_and_conv_order(tmp_path) -> None:
    rng = np.random.default_rng(0)
    a1, b1 = rng.standard_normal((4, 64)), rng.standard_normal((128, 4))
    a2, b2 = rng.standard_normal((2, 128)), rng.standard_normal((64, 2))
    conv_a, conv_b = rng.standard_normal((3, 5, 2, 2)), rng.standard_normal((7, 3, 1, 1))  # torch [r, cin, kh, kw]
    write_peft_dir(tmp_path / "p", {"net.fc1": (a1, b1), "net.fc2": (a2, b2), "conv": (conv_a, conv_b)}, r=4, alpha=8,
                   rank_pattern={"fc2": 2, "conv": 3}, alpha_pattern={"fc2": 4})
    adapter = load_adapter(tmp_path / "p", name="peft-demo", version="2.0", sequence=5, tags={"tenant": "acme"})
    assert adapter.source == "peft" and adapter.kind == "lora" and adapter.sequence == 5
    assert set(adapter.targets) == {"fc1", "fc2", "conv"}  # last dotted component
    fc1, fc2, conv = (adapter.targets[k] for k in ("fc1", "fc2", "conv"))
    np.testing.assert_array_equal(fc1.a, a1.astype(np.float32))
    assert fc1.scaling == 8 / 4 and fc2.scaling == 4 / 2 and conv.scaling == 8 / 3
    # Conv2d lora_A [r, cin, kh, kw] -> TFLite order [r, kh, kw, cin], flattened.
    np.testing.assert_array_equal(conv.a.reshape(3, 2, 2, 5), np.transpose(conv_a, (0, 2, 3, 1)).astype(np.float32))
    assert conv.b.shape == (7, 3)
    write_peft_dir(tmp_path / "rs", {"fc1": (a1, b1)}, r=4, alpha=8, use_rslora=True)
    assert load_adapter(tmp_path / "rs").targets["fc1"].scaling == pytest.approx(8 / 2)


@pytest.mark.parametrize("change,message", [
    ({"peft_type": "IA3"}, "peft_type"),
    ({"use_dora": True}, "DoRA"),
    ({"bias": "all"}, "bias"),
    ({"modules_to_save": ["head"]}, "modules_to_save"),
    ({"r": 8}, "rank 8"),
])
def test_peft_configs_we_cannot_represent_are_refused_by_name(tmp_path, change, message) -> None:
    rng = np.random.default_rng(1)
    write_peft_dir(tmp_path, {"fc1": (rng.standard_normal((4, 64)), rng.standard_normal((128, 4)))}, **change)
    with pytest.raises(AdapterSourceError, match=message):
        load_adapter(tmp_path)


def test_tinyswap_format_lora_and_bottleneck_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(2)
    (tmp_path / "lo").mkdir()
    (tmp_path / "lo" / "adapter.json").write_text(json.dumps(
        {"name": "lo", "version": "1", "sequence": 1, "kind": "lora", "targets": {"fc2": {"rank": 4, "alpha": 8}}}))
    np.savez(tmp_path / "lo" / "adapter.npz", **{"fc2/A": rng.standard_normal((4, 128)), "fc2/B": rng.standard_normal((64, 4))})
    lo = load_adapter(tmp_path / "lo")
    assert isinstance(lo.targets["fc2"], Lora) and lo.targets["fc2"].scaling == 2.0
    (tmp_path / "bn").mkdir()
    (tmp_path / "bn" / "adapter.json").write_text(json.dumps(
        {"name": "bn", "version": "1", "sequence": 1, "kind": "bottleneck", "targets": {"dw1": {"rank": 4}}}))
    np.savez(tmp_path / "bn" / "adapter.npz", **{"dw1/D": rng.standard_normal((4, 8)), "dw1/bias_D": np.zeros(4),
                                                  "dw1/U": rng.standard_normal((8, 4)), "dw1/bias_U": np.zeros(8)})
    bn = load_adapter(tmp_path / "bn")
    assert isinstance(bn.targets["dw1"], Bottleneck) and bn.kind == "bottleneck"
    np.savez(tmp_path / "bn" / "adapter.npz", **{"dw1/D": rng.standard_normal((4, 8))})
    with pytest.raises(AdapterSourceError, match="lacks"):
        load_adapter(tmp_path / "bn")
    with pytest.raises(AdapterSourceError, match="neither"):
        load_adapter(tmp_path)


def test_wrong_kind_and_unknown_layer_are_refused_by_the_packer(tmp_path) -> None:
    rng = np.random.default_rng(3)
    smap = example_bundle("mlp").smap
    write_peft_dir(tmp_path / "x", {"fc7": (rng.standard_normal((4, 64)), rng.standard_normal((128, 4)))})
    with pytest.raises(PackError, match="fc7"):
        pack(load_adapter(tmp_path / "x"), smap, KEY)
    cnn = example_bundle("cnn").smap  # dw1 has a bottleneck slot
    write_peft_dir(tmp_path / "y", {"dw1": (rng.standard_normal((4, 8)), rng.standard_normal((8, 4)))})
    with pytest.raises(PackError, match="bottleneck slot"):
        pack(load_adapter(tmp_path / "y"), cnn, KEY)


def test_real_peft_directory_imports_and_its_quantized_effect_matches_the_float_merge(tmp_path) -> None:
    torch = pytest.importorskip("torch", reason="the peft extra (torch, peft) is not installed")
    peft = pytest.importorskip("peft", reason="the peft extra (torch, peft) is not installed")
    torch.manual_seed(0)
    weights = np.load(EXAMPLES / "mlp.npz")

    class MLP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2, self.fc3 = torch.nn.Linear(64, 128), torch.nn.Linear(128, 64), torch.nn.Linear(64, 10)

        def forward(self, x):
            return torch.softmax(self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x))))), dim=-1)

    model = MLP()
    with torch.no_grad():
        for name in ("fc1", "fc2", "fc3"):
            getattr(model, name).weight.copy_(torch.from_numpy(weights[f"{name}/kernel"].T.copy()))
            getattr(model, name).bias.copy_(torch.from_numpy(weights[f"{name}/bias"]))
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["fc1", "fc2", "fc3"], lora_dropout=0.0)
    peft_model = peft.get_peft_model(model, config)
    with torch.no_grad():  # PEFT initialises B to zero: give the adapter a real effect
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn_like(param) * 0.05)
            elif "lora_A" in name:
                param.copy_(torch.randn_like(param) / np.sqrt(param.shape[1]))
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    files = sorted(p.name for p in (tmp_path / "adapter").iterdir())
    assert "adapter_config.json" in files and "adapter_model.safetensors" in files

    adapter = load_adapter(tmp_path / "adapter", name="peft-real", version="1.0", sequence=1)
    bundle = example_bundle("mlp", headroom=True, targets=[
        {"layer": "fc1", "kind": "lora", "max_rank": 4}, {"layer": "fc2", "kind": "lora", "max_rank": 4},
        {"layer": "fc3", "kind": "lora", "max_rank": 4}])
    data, report = pack(adapter, bundle.smap, KEY)
    pkg = parse_package(data)
    state = peft_model.state_dict()
    by_key = {(t.layer, t.role): t for t in pkg.tensors}
    scales = {(t["layer"], t["role"]): t["scales"][0] for t in bundle.smap["slots"][0]["tensors"]}
    for layer in ("fc1", "fc2", "fc3"):
        a = state[f"base_model.model.{layer}.lora_A.default.weight"].numpy().astype(np.float64)
        b = state[f"base_model.model.{layer}.lora_B.default.weight"].numpy().astype(np.float64)
        float_delta = (8 / 4) * b @ a  # W + (alpha / r) B A
        a_q = np.frombuffer(pkg.tensor_bytes(by_key[(layer, "A")]), np.int8).reshape(4, -1) * scales[(layer, "A")]
        b_q = np.frombuffer(pkg.tensor_bytes(by_key[(layer, "B")]), np.int8).reshape(-1, 4) * scales[(layer, "B")]
        error = np.linalg.norm(b_q @ a_q - float_delta) / np.linalg.norm(float_delta)
        print(f"{layer}: quantized delta vs float (alpha/r) B A: {error:.2%}")
        assert error <= 0.05, f"{layer}: quantized delta off by {error:.2%}"
        assert report.layers[layer]["delta_relative_error"] == pytest.approx(error, rel=1e-6)

    # End to end: the INT8 model with the adapter on vs the float PEFT model.
    m = SwapManager(bytearray(bundle.data), bundle.smap, Keyring([KEY.public_key()]))
    m.load_adapter(data)
    x = np.random.default_rng(0).standard_normal((512, 64)).astype(np.float32)
    q, oq = bundle.compiled.input_quant, bundle.compiled.output_quant
    xq = quantize_int8(x, q.scale, q.zero_point)
    ours = (m.infer(xq, adapters="peft-real")[0].astype(np.float64) - oq.zero_point) * oq.scale
    base = (m.infer(xq)[0].astype(np.float64) - oq.zero_point) * oq.scale
    with torch.no_grad():
        reference = peft_model(torch.from_numpy(x)).numpy()
        with peft_model.disable_adapter():
            float_base = peft_model(torch.from_numpy(x)).numpy()
    print(f"end to end: max |p_int8 - p_peft| {np.abs(ours - reference).max():.3f}, "
          f"top-1 agreement {np.mean(ours.argmax(1) == reference.argmax(1)):.3f}")
    assert np.abs(ours - reference).max() <= 0.15
    assert np.mean(ours.argmax(1) == reference.argmax(1)) >= 0.88
    # ... and the adapter changes the model as it does in PEFT (complaint: "loads, no effect").
    changed_float = reference.argmax(1) != float_base.argmax(1)
    changed_int8 = ours.argmax(1) != base.argmax(1)
    assert changed_float.mean() > 0.05 and np.mean(changed_int8 == changed_float) >= 0.85


def test_pack_command_takes_a_peft_directory(tmp_path, capsys) -> None:
    from cryptography.hazmat.primitives import serialization

    from tinyswap.cli import main
    from tinyswap.package import verify_package

    bundle = tmp_path / "bundle"
    assert main(["export", str(EXAMPLES / "mlp.json"), "--plan", str(EXAMPLES / "mlp.plan.json"), "-o", str(bundle)]) == 0
    assert main(["keygen", "-o", str(tmp_path / "keys")]) == 0
    rng = np.random.default_rng(4)
    write_peft_dir(tmp_path / "peft", {"fc2": (rng.standard_normal((4, 128)) / 11, rng.standard_normal((64, 4)) * 0.02)})
    out = tmp_path / "kws.tsap"
    assert main(["pack", str(tmp_path / "peft"), "--bundle", str(bundle), "--key", str(tmp_path / "keys" / "signing_key.pem"),
                 "--name", "kws", "--version", "2.0", "--sequence", "7", "--tenant", "acme", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "from peft" in printed and "fc2" in printed and "delta error" in printed
    pkg = parse_package(out.read_bytes())
    assert (pkg.name, pkg.sequence, pkg.metadata["tags"]["tenant"], pkg.metadata["source"]) == ("kws", 7, "acme", "peft")
    public = serialization.load_pem_public_key((tmp_path / "keys" / "signing_key.pub.pem").read_bytes())
    smap = json.loads((bundle / "slotmap.json").read_text())
    verify_package(pkg, Keyring([public]), smap["base_digest"], smap["slots"][0]["tensors"], {})


# --- Hostile adapter directories: each is refused with one typed line naming file, layer and field.

def write_safetensors(path, tensors: dict[str, tuple[str, list[int], bytes]], header_extra: dict | None = None) -> None:
    """A safetensors file written by hand: 8-byte little-endian header length, JSON header, data."""
    header, data = dict(header_extra or {}), b""
    for key, (dtype, shape, raw) in tensors.items():
        header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


def write_tinyswap_dir(path, targets: dict, arrays: dict, **config) -> None:
    path.mkdir(parents=True, exist_ok=True)
    cfg = {"name": "t", "version": "1", "sequence": 1, "kind": "lora", "targets": targets}
    cfg.update(config)
    (path / "adapter.json").write_text(json.dumps(cfg))
    np.savez(path / "adapter.npz", **arrays)


def _lora_arrays(rank=4, dtype=np.float64, layer="fc2"):
    rng = np.random.default_rng(5)
    return {f"{layer}/A": rng.standard_normal((rank, 128)).astype(dtype),
            f"{layer}/B": rng.standard_normal((64, rank)).astype(dtype)}


def _nan_arrays():
    arrays = _lora_arrays()
    arrays["fc2/A"][1, 2] = np.nan
    return arrays


def _inf_arrays():
    arrays = _lora_arrays()
    arrays["fc2/B"][0, 0] = -np.inf
    return arrays


@pytest.mark.parametrize("targets,arrays,config,message", [
    ({"fc2": {"rank": "four"}}, _lora_arrays(), {}, r"layer 'fc2': 'rank' must be a positive integer, got 'four'"),
    ({"fc2": {"rank": 0}}, _lora_arrays(), {}, r"layer 'fc2': 'rank' must be a positive integer, got 0"),
    ({"fc2": {"rank": -4}}, _lora_arrays(), {}, r"'rank' must be a positive integer, got -4"),
    ({"fc2": {"rank": True}}, _lora_arrays(), {}, r"'rank' must be a positive integer, got True"),
    ({"fc2": {"rank": 4, "alpha": "x"}}, _lora_arrays(), {}, r"layer 'fc2': 'alpha' must be a finite number"),
    ({"fc2": {"rank": 4}}, _nan_arrays(), {}, r"adapter.npz: array 'fc2/A' holds 1 NaN or infinite values"),
    ({"fc2": {"rank": 4}}, _inf_arrays(), {}, r"array 'fc2/B' holds 1 NaN or infinite"),
    ({"fc2": {"rank": 4}}, _lora_arrays(dtype=np.int32), {}, r"array 'fc2/A' has dtype int32"),
    ({"fc2": {"rank": 4}}, _lora_arrays(dtype=bool), {}, r"array 'fc2/A' has dtype bool"),
    ({"fc2": {"rank": 4}}, _lora_arrays(), {"tags": ["ab"]}, r"'tags' must be an object of string -> string"),
    ({"fc2": {"rank": 4}}, _lora_arrays(), {"tags": {"task": 3}}, r"tag 'task' must map to a string or null"),
    ({"fc2": {"rank": 3}}, _lora_arrays(), {}, r"layer 'fc2': A \(4, 128\) and B \(64, 4\) do not have rank 3"),
    ({"fc2": {"alpha": 4}}, _lora_arrays(), {}, r"layer 'fc2': targets entry needs an integer 'rank'"),
    ({"fc2": 4}, _lora_arrays(), {}, r"layer 'fc2': targets entry must be an object"),
    ([], _lora_arrays(), {}, r"'targets' must be a non-empty object"),
    ({"fc2": {"rank": 4}}, _lora_arrays(), {"sequence": "7"}, r"'sequence' must be an integer in 0..9223372036854775807"),
    ({"fc2": {"rank": 4}}, _lora_arrays(), {"sequence": 2**63}, r"'sequence' must be an integer in 0..9223372036854775807"),
    ({"fc2": {"rank": 4}}, _lora_arrays(), {"name": ["x"]}, r"'name' must be a non-empty string"),
])
def test_hostile_tinyswap_directories_are_refused_by_field(tmp_path, targets, arrays, config, message) -> None:
    write_tinyswap_dir(tmp_path, targets, arrays, **config)
    with pytest.raises(AdapterSourceError, match=message) as info:
        load_adapter(tmp_path)
    assert "\n" not in str(info.value)


def test_tinyswap_tags_drop_nulls_and_accept_half_precision(tmp_path) -> None:
    write_tinyswap_dir(tmp_path, {"fc2": {"rank": 4, "alpha": 8}}, _lora_arrays(dtype=np.float16),
                       tags={"task": "kws", "user": None})
    adapter = load_adapter(tmp_path, tags={"tenant": "acme", "user": None})
    assert adapter.tags == {"task": "kws", "tenant": "acme"}
    np.testing.assert_array_equal(adapter.targets["fc2"].a, _lora_arrays(dtype=np.float16)["fc2/A"].astype(np.float64))


@pytest.mark.parametrize("change,message", [
    ({"r": "four"}, r"adapter_config.json: 'r' must be a positive integer, got 'four'"),
    ({"r": 0}, r"'r' must be a positive integer, got 0"),
    ({"r": True}, r"'r' must be a positive integer, got True"),
    ({"lora_alpha": "big"}, r"adapter_config.json: 'lora_alpha' must be a finite number, got 'big'"),
    ({"lora_alpha": float("nan")}, r"'lora_alpha' must be a finite number, got nan"),
    ({"rank_pattern": ["fc1"]}, r"adapter_config.json: 'rank_pattern' must be an object"),
    ({"rank_pattern": {"fc1": "4"}}, r"rank_pattern\['fc1'\] must be a positive integer, got '4'"),
    ({"alpha_pattern": {"fc1": None}}, r"alpha_pattern\['fc1'\] must be a finite number, got None"),
    ({"alpha_pattern": "fc1"}, r"'alpha_pattern' must be an object"),
    ({"rank_pattern": {"(": 4}}, r"pattern key '\(' is not a regular expression"),
    ({"use_rslora": "yes"}, r"'use_rslora' must be true or false"),
])
def test_hostile_peft_configs_are_refused_by_field(tmp_path, change, message) -> None:
    rng = np.random.default_rng(6)
    write_peft_dir(tmp_path, {"fc1": (rng.standard_normal((4, 64)), rng.standard_normal((128, 4)))}, **change)
    with pytest.raises(AdapterSourceError, match=message) as info:
        load_adapter(tmp_path)
    assert "\n" not in str(info.value)


def _peft_cfg(path) -> None:
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4}))


def test_bf16_and_f16_safetensors_load_exactly(tmp_path) -> None:
    rng = np.random.default_rng(7)
    # bf16: float32 values whose low 16 bits are zero; the file holds their upper halves.
    a32 = (rng.standard_normal((2, 64)).astype(np.float32).view(np.uint32) & 0xFFFF0000).view(np.float32)
    b32 = (rng.standard_normal((128, 2)).astype(np.float32).view(np.uint32) & 0xFFFF0000).view(np.float32)
    halves = {k: (v.view(np.uint32) >> 16).astype("<u2").tobytes() for k, v in (("a", a32), ("b", b32))}
    write_safetensors(tmp_path / "adapter_model.safetensors", {
        "base_model.model.fc1.lora_A.weight": ("BF16", [2, 64], halves["a"]),
        "base_model.model.fc1.lora_B.weight": ("BF16", [128, 2], halves["b"])}, {"__metadata__": {"format": "pt"}})
    _peft_cfg(tmp_path)
    lora = load_adapter(tmp_path).targets["fc1"]
    assert lora.a.dtype == np.float64 and lora.scaling == 2.0
    np.testing.assert_array_equal(lora.a, a32.astype(np.float64))
    np.testing.assert_array_equal(lora.b, b32.astype(np.float64))
    a16, b16 = rng.standard_normal((2, 64)).astype("<f2"), rng.standard_normal((128, 2)).astype("<f2")
    write_safetensors(tmp_path / "adapter_model.safetensors", {
        "base_model.model.fc1.lora_A.weight": ("F16", [2, 64], a16.tobytes()),
        "base_model.model.fc1.lora_B.weight": ("F16", [128, 2], b16.tobytes())})
    lora = load_adapter(tmp_path).targets["fc1"]
    np.testing.assert_array_equal(lora.a, a16.astype(np.float64))
    np.testing.assert_array_equal(lora.b, b16.astype(np.float64))


def test_real_bf16_safetensors_from_torch_loads(tmp_path) -> None:
    torch = pytest.importorskip("torch", reason="the peft extra (torch, peft) is not installed")
    from safetensors.torch import save_file as save_torch

    torch.manual_seed(0)
    a, b = torch.randn(2, 64).to(torch.bfloat16), torch.randn(128, 2).to(torch.bfloat16)
    save_torch({"base_model.model.fc1.lora_A.weight": a, "base_model.model.fc1.lora_B.weight": b},
               str(tmp_path / "adapter_model.safetensors"))
    _peft_cfg(tmp_path)
    lora = load_adapter(tmp_path).targets["fc1"]
    np.testing.assert_array_equal(lora.a, a.float().numpy().astype(np.float64))
    np.testing.assert_array_equal(lora.b, b.float().numpy().astype(np.float64))


def _st_case(kind: str):
    ok_a = np.ones((2, 64), "<f4").tobytes()
    ok_b = np.ones((128, 2), "<f4").tobytes()
    A, B = "base_model.model.fc1.lora_A.weight", "base_model.model.fc1.lora_B.weight"
    if kind == "int":
        return {A: ("I32", [2, 64], ok_a), B: ("F32", [128, 2], ok_b)}, r"tensor '.*lora_A.weight' has dtype I32"
    if kind == "bool":
        return {A: ("BOOL", [2, 64], b"\1" * 128), B: ("F32", [128, 2], ok_b)}, r"lora_A.weight' has dtype BOOL"
    if kind == "unknown":
        return {A: ("Q4", [2, 64], ok_a), B: ("F32", [128, 2], ok_b)}, r"lora_A.weight': unknown dtype 'Q4'"
    if kind == "nan":
        return {A: ("F32", [2, 64], np.full((2, 64), np.nan, "<f4").tobytes()), B: ("F32", [128, 2], ok_b)}, \
            r"tensor 'base_model.model.fc1.lora_A.weight' holds 128 NaN or infinite values"
    if kind == "bf16inf":
        return {A: ("BF16", [2, 64], b"\x80\x7f" * 128), B: ("F32", [128, 2], ok_b)}, r"lora_A.weight' holds 128 NaN"
    if kind == "size":
        return {A: ("F32", [2, 65], ok_a), B: ("F32", [128, 2], ok_b)}, r"512 bytes for shape \[2, 65\] of F32"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["int", "bool", "unknown", "nan", "bf16inf", "size"])
def test_hostile_safetensors_tensors_are_refused_by_name(tmp_path, kind) -> None:
    tensors, message = _st_case(kind)
    write_safetensors(tmp_path / "adapter_model.safetensors", tensors)
    _peft_cfg(tmp_path)
    with pytest.raises(AdapterSourceError, match=message):
        load_adapter(tmp_path)


@pytest.mark.parametrize("raw,message", [
    (b"\x01\x00", r"2 bytes is too short"),
    ((1 << 40).to_bytes(8, "little") + b"{}", r"header length 1099511627776 runs past the 10-byte file"),
    ((30).to_bytes(8, "little") + b"{}", r"header length 30 runs past"),
    ((2).to_bytes(8, "little") + b"[]", r"header must be a JSON object"),
    (None, r"data_offsets \[0, 4096\] are not inside the 512-byte data"),
])
def test_hostile_safetensors_headers_are_refused(tmp_path, raw, message) -> None:
    if raw is None:
        header = json.dumps({"base_model.model.fc1.lora_A.weight": {"dtype": "F32", "shape": [2, 64],
                                                                     "data_offsets": [0, 4096]}}).encode()
        raw = len(header).to_bytes(8, "little") + header + bytes(512)
    (tmp_path / "adapter_model.safetensors").write_bytes(raw)
    _peft_cfg(tmp_path)
    with pytest.raises(AdapterSourceError, match=message):
        load_adapter(tmp_path)
