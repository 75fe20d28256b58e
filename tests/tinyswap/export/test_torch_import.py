"""PyTorch -> ModelSpec -> INT8 bundle: everyday modules, one call each, checked three ways.

1. The spec's float forward pass reproduces the module (random BatchNorm statistics, NCHW in).
2. Trained briefly on real data (the committed digits test split, scikit-learn's 8x8 digits),
   each module exports with slots in one call; with gates off its INT8 top-1 agrees with the
   float module on >= 95% of held-out rows and its INT8 accuracy is within 1 point of the
   float accuracy (the TensorFlow converter takes no PyTorch module; the Keras tests compare
   with the converter's own int8 model).
3. Random bytes in every slot tensor and random gates: our interpreter equals TFLite Micro byte
   for byte (a CI sample here; `test_random_slot_bytes_full` is the slow full run).

And a PEFT LoRA trained with the real `peft` library on the exported base packs into the
bundle by its module paths, no layer map, and gains as much accuracy in INT8 as in float.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from tinyswap.export.errors import ModelSourceError, TorchImportError  # noqa: E402
from tinyswap.export.float_model import forward  # noqa: E402
from tinyswap.export.front_door import export_model  # noqa: E402
from tinyswap.export.slot_plan import SlotPlan, SlotTarget  # noqa: E402
from tinyswap.export.torch_import import import_torch  # noqa: E402
from tinyswap.quantize import quantize_int8  # noqa: E402

from tests.conftest import FULL, REPO  # noqa: E402
from tests.export_cases import check_random_slot_bytes, gates_off_outputs  # noqa: E402

DIGITS = REPO / "models" / "digits" / "digits_test.npz"


class ResidualCnn(nn.Module):
    """Conv + BN + ReLU, a residual block, a depthwise conv, concat, global pooling, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
        self.dw = nn.Conv2d(16, 32, 3, stride=2, padding=1, groups=16)
        self.act = nn.Hardswish()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(32, 10))

    def forward(self, x):
        h = self.features(x)
        h = torch.relu(h + self.block(h))
        h = torch.cat([h, torch.sigmoid(h) * h], dim=1)
        return self.classifier(self.pool(self.act(self.dw(h))))


class KwsConv1d(nn.Module):
    """Keyword-spotting style: Conv1d over time (8 rows as 8 steps of 8 features), BN, pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(8, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm1d(16)
        self.pool = nn.MaxPool1d(2)
        self.conv2 = nn.Conv1d(16, 16, 3)
        self.act = nn.LeakyReLU(0.1)
        self.fc = nn.Linear(16 * 2, 10)

    def forward(self, x):
        h = self.pool(nn.functional.relu6(self.bn1(self.conv1(x))))
        h = self.act(self.conv2(h))
        return self.fc(torch.flatten(h, 1))


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.Tanh(), nn.Linear(32, 24), nn.ReLU6())
        self.head = nn.Linear(24, 10)

    def forward(self, x):
        return self.head(self.body(x))


# (module class, input shape per row, plan targets)
CASES = {
    "residual_cnn": (ResidualCnn, (1, 8, 8), ("features.0", "classifier.2")),
    "kws_conv1d": (KwsConv1d, (8, 8), ("conv2",)),
    "mlp": (Mlp, (64,), ("body.0", "head")),
}


def randomize_batch_norm(module: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.3)


def digits(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    with np.load(DIGITS) as npz:
        x = (npz["original"].astype(np.float32) / 16.0).reshape(-1, *shape)
        y = npz["labels"].astype(np.int64)
    return x[:360], y[:360], x[360:], y[360:]


def train(module: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int = 25, batch: int = 40,
          frozen_batch_norm: bool = False) -> nn.Module:
    """Adam on cross-entropy. `frozen_batch_norm` keeps BatchNorm in eval mode: its running
    statistics are buffers, not parameters, so freezing the parameters (as PEFT does) does not
    stop train mode from overwriting them with the new data's statistics."""
    torch.manual_seed(0)
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=0.01)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    module.train()
    if frozen_batch_norm:
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    for _ in range(epochs):
        for i in range(0, len(x), batch):
            opt.zero_grad()
            nn.functional.cross_entropy(module(xt[i:i + batch]), yt[i:i + batch]).backward()
            opt.step()
    return module.eval()


@pytest.fixture(scope="module")
def trained() -> dict[str, tuple]:
    """Each case trained on 360 digits (about a second each), exported once."""
    torch.set_num_threads(1)
    out = {}
    for name, (cls, shape, targets) in CASES.items():
        torch.manual_seed(1)
        x, y, xt, yt = digits(shape)
        module = train(cls(), x, y)
        plan = SlotPlan(targets=tuple(SlotTarget(t, max_rank=4) for t in targets))
        built = export_model(module, plan, calibration=x[:200])
        out[name] = (module, built, x, y, xt, yt)
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_float_spec_reproduces_the_module(name: str) -> None:
    cls, shape, _ = CASES[name]
    torch.manual_seed(2)
    module = cls()
    randomize_batch_norm(module, 3)
    module.eval()
    x = np.random.default_rng(0).standard_normal((6, *shape)).astype(np.float32)
    imported = import_torch(module, torch.from_numpy(x[:1]))
    ours = forward(imported.spec, imported.to_spec_layout(x))[imported.spec.output]
    with torch.no_grad():
        reference = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)
    # BatchNorm is folded into the layer before it: no affine layer is left in these modules.
    assert not [l.name for l in imported.spec.layers if l.type == "affine"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_trained_module_int8_agrees_with_float(name: str, trained) -> None:
    module, built, _, _, xt, yt = trained[name]
    permutation = (0, *range(2, xt.ndim), 1) if xt.ndim > 2 else (0, 1)
    ours = gates_off_outputs(built, np.transpose(xt, permutation))
    with torch.no_grad():
        reference = module(torch.from_numpy(xt)).numpy()
    agreement = float(np.mean(ours.argmax(1) == reference.argmax(1)))
    float_accuracy = float(np.mean(reference.argmax(1) == yt))
    int8_accuracy = float(np.mean(ours.argmax(1) == yt))
    print(f"{name}: top-1 agreement {agreement:.3f}, accuracy float {float_accuracy:.3f} int8 {int8_accuracy:.3f}")
    assert float_accuracy >= 0.85, "the module did not learn; the comparison would say nothing"
    assert agreement >= 0.95
    # Within two held-out rows (a row is 1/len(yt), 1.1 points of 90): the float module's
    # training is deterministic on one machine but not across CPUs (its BLAS kernels differ), and
    # one row either way was seen on two machines with the same code.
    assert abs(int8_accuracy - float_accuracy) * len(yt) <= 2 + 1e-9


@pytest.mark.parametrize("name", sorted(CASES))
def test_random_slot_bytes_match_tflite_micro(name: str, trained) -> None:
    for seed in range(3):
        check_random_slot_bytes(trained[name][1], seed)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_random_slot_bytes_full(name: str, trained) -> None:
    for seed in range(3, 203 if FULL else 6):
        check_random_slot_bytes(trained[name][1], seed)


def test_peft_lora_packs_by_module_path(tmp_path, capsys, trained) -> None:
    """A PEFT LoRA trained on the exported base, on a shifted domain (the digits mirrored), packs
    by its module paths (`features.0`, `classifier.2`: no layer map), its quantized delta within a
    few percent of PEFT's, and raises INT8 accuracy on that domain as much as it raises the float
    model's (within 3 points, on 180 held-out rows).

    The LoRA is trained with BatchNorm in eval mode. In train mode PEFT's model overwrites the
    base's BatchNorm running statistics with the shifted domain's (they are buffers, not the
    parameters PEFT freezes), so the float model measured is no longer the exported base plus its
    LoRA; the adapter directory holds only the LoRA, and the bundle keeps the original statistics.
    Trained that way this LoRA measured +33 points in float and +8 in INT8."""
    peft = pytest.importorskip("peft")
    from tinyswap.cli import main
    from tinyswap.package import Keyring
    from tinyswap.swap import SwapManager
    from tinyswap.export.pack import load_private_key

    base, _, x, y, _, yt = trained["residual_cnn"]
    base = copy.deepcopy(base)  # PEFT wraps layers in place; the fixture's module stays as it is
    plan = SlotPlan(targets=(SlotTarget("features.0", max_rank=4), SlotTarget("classifier.2", max_rank=4)))
    bundle_dir = tmp_path / "bundle"
    with np.load(DIGITS) as npz:
        shifted = (npz["shift"].astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    sx, sxt, yt = shifted[:360], shifted[360:540], yt[:180]
    built = export_model(base, plan, calibration=x[:200], out=bundle_dir)

    config = peft.LoraConfig(r=4, lora_alpha=4, target_modules=["features.0", "classifier.2"], lora_dropout=0.0)
    model = peft.get_peft_model(base, config)
    statistics = {k: v.clone() for k, v in model.state_dict().items() if "running_" in k}
    train(model, sx, y, epochs=10, frozen_batch_norm=True)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in statistics.items())  # still the exported base
    model.save_pretrained(str(tmp_path / "peft"))
    adapter_config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert sorted(adapter_config["target_modules"]) == ["classifier.2", "features.0"]

    assert main(["keygen", "-o", str(tmp_path / "keys")]) == 0
    package = tmp_path / "shift.tsap"
    assert main(["pack", str(tmp_path / "peft"), "--bundle", str(bundle_dir), "--key",
                 str(tmp_path / "keys" / "signing_key.pem"), "--name", "shift", "--version", "1", "--sequence", "1",
                 "-o", str(package)]) == 0
    printed = capsys.readouterr().out
    errors = [float(line.split("delta error ")[1].split("%")[0]) for line in printed.splitlines() if "delta error" in line]
    assert "features.0" in printed and "classifier.2" in printed and len(errors) == 2
    assert max(errors) <= 5.0, printed

    key = load_private_key(tmp_path / "keys" / "signing_key.pem")
    m = SwapManager(bytearray(built.data), built.slotmap, Keyring([key.public_key()]))
    m.load_adapter(package.read_bytes())
    q = built.compiled.input_quant
    xq = quantize_int8(np.transpose(sxt, (0, 2, 3, 1)), q.scale, q.zero_point)
    with_adapter = np.array([m.infer(row[None], adapters="shift")[0][0] for row in xq])
    without = np.array([m.infer(row[None])[0][0] for row in xq])
    with torch.no_grad():
        float_with = model(torch.from_numpy(sxt)).numpy()
        with model.disable_adapter():
            float_without = model(torch.from_numpy(sxt)).numpy()
    accuracy = {k: float(np.mean(v.argmax(1) == yt)) for k, v in (
        ("float with", float_with), ("float without", float_without), ("int8 with", with_adapter),
        ("int8 without", without))}
    gain_float = accuracy["float with"] - accuracy["float without"]
    gain_int8 = accuracy["int8 with"] - accuracy["int8 without"]
    agreement = float(np.mean(with_adapter.argmax(1) == float_with.argmax(1)))
    print(f"shift domain: {accuracy}, float gain {gain_float:.3f}, int8 gain {gain_int8:.3f}, "
          f"top-1 agreement {agreement:.3f}")
    assert gain_float >= 0.2, "the LoRA did not learn the shifted domain; the comparison would say nothing"
    assert abs(gain_int8 - gain_float) <= 0.03 + 1e-9
    assert agreement >= 0.9


def test_unsupported_modules_are_listed_in_one_error() -> None:
    class Bad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 8)
            self.gelu = nn.GELU()
            self.norm = nn.LayerNorm(8)

        def forward(self, x):
            return self.norm(self.gelu(self.fc(x)))

    with pytest.raises(TorchImportError) as info:
        import_torch(Bad(), torch.zeros(1, 8))
    message = str(info.value)
    assert "gelu (GELU)" in message and "norm (LayerNorm)" in message
    assert "\n  fc (" not in message  # the Linear is taken


def test_lora_slot_on_a_linear_reading_a_flattened_map_is_refused() -> None:
    module = KwsConv1d().eval()
    plan = SlotPlan(targets=(SlotTarget("fc"),))
    x = np.zeros((4, 8, 8), np.float32)
    with pytest.raises(TorchImportError, match=r"\['fc'\].*\(h, w, c\)"):
        export_model(module, plan, calibration=x)


def test_a_module_without_calibration_is_refused() -> None:
    with pytest.raises(ModelSourceError, match="calibration"):
        export_model(Mlp(), None)
