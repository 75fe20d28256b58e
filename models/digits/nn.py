"""A small NumPy network with manual backprop, for the digits models and their adapters.

It runs the layer graph of a tinyswap spec (`dense`, `conv2d` with SAME or VALID padding and
stride 1, `max_pool2d`, `flatten`, `softmax`) in float64, with an optional adapter:

- LoRA on a dense/conv2d layer: `y = act(W x + b + s * B A x)`, s = alpha / rank; for conv2d
  x is the layer's patch matrix in TFLite filter order (kh, kw, cin), as the packer expects.
- Bottleneck on a layer's output h: `h + U relu(D h + bD) + bU` (1x1 on feature maps).

`Net.loss_and_grads` returns the mean softmax cross-entropy and the gradients of the
parameters asked for (base weights for base training, adapter weights with the base frozen).
Only the forward pass and its exact gradients live here; the optimiser is `Adam` below.
Used by train.py only (training never runs in tests or in the demo).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _same_pads(k: int) -> tuple[int, int]:
    """TensorFlow SAME padding for stride 1: total k - 1, the extra one at the end."""
    return (k - 1) // 2, (k - 1) - (k - 1) // 2


def im2col(x: np.ndarray, kh: int, kw: int, padding: str) -> np.ndarray:
    """[B, H, W, C] -> [B, OH, OW, kh * kw * C] patches in (kh, kw, cin) order (stride 1)."""
    if padding == "same":
        (pt, pb), (pl, pr) = _same_pads(kh), _same_pads(kw)
        x = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    b, hp, wp, c = x.shape
    oh, ow = hp - kh + 1, wp - kw + 1
    cols = np.stack([x[:, i : i + oh, j : j + ow, :] for i in range(kh) for j in range(kw)], axis=3)
    return cols.reshape(b, oh, ow, kh * kw * c)


def col2im(dcols: np.ndarray, in_shape: tuple[int, ...], kh: int, kw: int, padding: str) -> np.ndarray:
    """The adjoint of `im2col`: scatter-add patch gradients back onto the input."""
    b, h, w, c = in_shape
    (pt, pb), (pl, pr) = (_same_pads(kh), _same_pads(kw)) if padding == "same" else ((0, 0), (0, 0))
    oh, ow = dcols.shape[1], dcols.shape[2]
    d = dcols.reshape(b, oh, ow, kh * kw, c)
    dx = np.zeros((b, h + pt + pb, w + pl + pr, c))
    for idx, (i, j) in enumerate((i, j) for i in range(kh) for j in range(kw)):
        dx[:, i : i + oh, j : j + ow, :] += d[:, :, :, idx, :]
    return dx[:, pt : pt + h, pl : pl + w, :]


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class Net:
    """The float network of a spec (JSON layers) with weights in Keras layouts.

    `limits` (optional) makes the forward pass clip where the compiled INT8 graph saturates:
    {layer: {"out": (lo, hi), "pre": (lo, hi), "u": (lo, hi), "sum": (lo, hi), "d": (lo, hi),
    "bn_u": (lo, hi), "adapted": (lo, hi)}} (see train.slot_limits). A clipped value passes no
    gradient, and `penalty` adds penalty * sum(excess ** 2) per row to the loss so that the
    adapter learns to stay inside the ranges (then the float model and the INT8 one agree).
    """

    def __init__(self, layers: list[dict[str, Any]], weights: dict[str, np.ndarray],
                 limits: dict[str, dict[str, tuple[float, float]]] | None = None, penalty: float = 0.0) -> None:
        self.layers = layers
        self.w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
        self.limits = limits or {}
        self.penalty = penalty

    def _clip(self, v: np.ndarray, layer: str, key: str, entry: dict[str, Any]) -> np.ndarray:
        bounds = self.limits.get(layer, {}).get(key)
        if bounds is None:
            return v
        c = np.clip(v, *bounds)
        entry[f"excess_{key}"] = v - c
        return c

    def _unclip(self, g: np.ndarray, key: str, entry: dict[str, Any]) -> np.ndarray:
        excess = entry.get(f"excess_{key}")
        if excess is None:
            return g
        return np.where(excess == 0.0, g, 0.0) + 2.0 * self.penalty * excess / entry["rows"]

    # -- forward ------------------------------------------------------------------------------
    def forward(self, x: np.ndarray, adapter: dict[str, Any] | None = None) -> tuple[np.ndarray, list]:
        """Logits (the softmax layer is left to the loss) and the cache for `backward`.

        adapter: {"kind": "lora"|"bottleneck", "targets": {layer: {...arrays...}}} where a LoRA
        target holds A [r, K], B [out, r] and scaling; a bottleneck target D, bias_D, U, bias_U.
        """
        targets = (adapter or {}).get("targets", {})
        kind = (adapter or {}).get("kind")
        cache: list = []
        h = np.asarray(x, np.float64)
        rows = len(h)
        for layer in self.layers:
            name, t = layer["name"], layer["type"]
            entry: dict[str, Any] = {"layer": layer, "in_shape": h.shape, "rows": rows}
            if t in ("dense", "conv2d"):
                k = self.w[f"{name}/kernel"]
                if t == "conv2d":
                    kh, kw = _pair(layer["kernel_size"])
                    xm = im2col(h, kh, kw, layer.get("padding", "valid"))
                    wm = k.reshape(-1, k.shape[-1])
                else:
                    xm, wm = h, k
                pre = xm @ wm + self.w[f"{name}/bias"]
                if kind == "lora" and name in targets:
                    tg = targets[name]
                    pre = self._clip(pre, name, "pre", entry)
                    a = xm @ tg["A"].T
                    u = self._clip(tg["scaling"] * (a @ tg["B"].T), name, "u", entry)
                    pre = self._clip(pre + u, name, "sum", entry)
                    entry["a"] = a
                entry["xm"], entry["wm"] = xm, wm
                if layer.get("activation", "none") == "relu":
                    entry["mask"] = pre > 0
                    h = np.where(entry["mask"], pre, 0.0)
                else:
                    h = pre
                h = self._clip(h, name, "out", entry)
            elif t == "max_pool2d":
                ph, pw = _pair(layer.get("pool_size", 2))
                b, hh, ww, c = h.shape
                win = h[:, : hh // ph * ph, : ww // pw * pw, :].reshape(b, hh // ph, ph, ww // pw, pw, c)
                win = win.transpose(0, 1, 3, 5, 2, 4).reshape(b, hh // ph, ww // pw, c, ph * pw)
                arg = win.argmax(-1)
                entry["arg"], entry["pool"] = arg, (ph, pw)
                h = np.take_along_axis(win, arg[..., None], -1)[..., 0]
            elif t == "flatten":
                h = h.reshape(h.shape[0], -1)
            elif t == "softmax":
                pass
            else:
                raise ValueError(f"nn.Net does not train {t} layers")
            if kind == "bottleneck" and name in targets:
                tg = targets[name]
                z = h @ tg["D"].T + tg["bias_D"]
                d = self._clip(np.maximum(z, 0.0), name, "d", entry)
                entry["bn_h"], entry["bn_d"], entry["bn_mask"] = h, d, z > 0
                u = self._clip(d @ tg["U"].T + tg["bias_U"], name, "bn_u", entry)
                h = self._clip(h + u, name, "adapted", entry)
            cache.append(entry)
        return h, cache

    def logits(self, x: np.ndarray, adapter: dict[str, Any] | None = None, batch: int = 512) -> np.ndarray:
        return np.concatenate([self.forward(x[i : i + batch], adapter)[0] for i in range(0, len(x), batch)])

    # -- backward -----------------------------------------------------------------------------
    def backward(self, cache: list, dlogits: np.ndarray, adapter: dict[str, Any] | None, want: str) -> dict[str, np.ndarray]:
        """Gradients of the base weights (want="base") or of the adapter's arrays (want="adapter")."""
        targets = (adapter or {}).get("targets", {})
        kind = (adapter or {}).get("kind")
        grads: dict[str, np.ndarray] = {}
        g = dlogits
        first = self.layers[0]["name"]
        for entry in reversed(cache):
            layer = entry["layer"]
            name, t = layer["name"], layer["type"]
            if kind == "bottleneck" and name in targets:
                tg = targets[name]
                d, h = entry["bn_d"], entry["bn_h"]
                g = self._unclip(g, "adapted", entry)  # d/dh and d/du of h + u
                gu = self._unclip(g, "bn_u", entry)
                guf = gu.reshape(-1, gu.shape[-1])
                grads[f"{name}/U"] = guf.T @ d.reshape(-1, d.shape[-1])
                grads[f"{name}/bias_U"] = guf.sum(0)
                gd = self._unclip(gu @ tg["U"], "d", entry) * entry["bn_mask"]
                gdf = gd.reshape(-1, gd.shape[-1])
                grads[f"{name}/D"] = gdf.T @ h.reshape(-1, h.shape[-1])
                grads[f"{name}/bias_D"] = gdf.sum(0)
                g = g + gd @ tg["D"]
            if t in ("dense", "conv2d"):
                g = self._unclip(g, "out", entry)
                if "mask" in entry:
                    g = g * entry["mask"]
                ga = None
                if kind == "lora" and name in targets:
                    tg = targets[name]
                    s = tg["scaling"]
                    a = entry["a"]
                    g = self._unclip(g, "sum", entry)  # d/d(pre) and d/du of pre + u
                    gu = self._unclip(g, "u", entry)
                    guf = gu.reshape(-1, gu.shape[-1])
                    ga = s * (gu @ tg["B"])  # d loss / d a
                    grads[f"{name}/B"] = s * guf.T @ a.reshape(-1, a.shape[-1])
                    grads[f"{name}/A"] = ga.reshape(-1, ga.shape[-1]).T @ entry["xm"].reshape(-1, entry["xm"].shape[-1])
                    g = self._unclip(g, "pre", entry)
                xm, wm = entry["xm"], entry["wm"]
                if want == "base":
                    gf = g.reshape(-1, g.shape[-1])
                    grads[f"{name}/kernel"] = (xm.reshape(-1, xm.shape[-1]).T @ gf).reshape(self.w[f"{name}/kernel"].shape)
                    grads[f"{name}/bias"] = gf.sum(0)
                if name == first:
                    break  # nothing upstream needs a gradient
                gx = g @ wm.T
                if ga is not None:
                    gx = gx + ga @ targets[name]["A"]
                if t == "conv2d":
                    kh, kw = _pair(layer["kernel_size"])
                    g = col2im(gx, entry["in_shape"], kh, kw, layer.get("padding", "valid"))
                else:
                    g = gx
            elif t == "max_pool2d":
                ph, pw = entry["pool"]
                arg = entry["arg"]
                b, oh, ow, c = arg.shape
                gw = np.zeros((b, oh, ow, c, ph * pw))
                np.put_along_axis(gw, arg[..., None], g[..., None], -1)
                gw = gw.reshape(b, oh, ow, c, ph, pw).transpose(0, 1, 4, 2, 5, 3).reshape(b, oh * ph, ow * pw, c)
                full = np.zeros(entry["in_shape"])
                full[:, : oh * ph, : ow * pw, :] = gw
                g = full
            elif t == "flatten":
                g = g.reshape(entry["in_shape"])
        return grads

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray, adapter: dict[str, Any] | None = None,
                       want: str = "base") -> tuple[float, dict[str, np.ndarray]]:
        logits, cache = self.forward(x, adapter)
        z = logits - logits.max(1, keepdims=True)
        lse = np.log(np.exp(z).sum(1, keepdims=True))
        p = np.exp(z - lse)
        n = len(y)
        loss = float(-(z[np.arange(n), y] - lse[:, 0]).mean())
        if self.penalty:
            loss += self.penalty * sum(float((v**2).sum()) for e in cache for k, v in e.items()
                                       if k.startswith("excess_")) / n
        d = p.copy()
        d[np.arange(n), y] -= 1.0
        return loss, self.backward(cache, d / n, adapter, want)


class Adam:
    """Adam with decoupled weight decay (AdamW) on a dict of float64 arrays, in place."""

    def __init__(self, params: dict[str, np.ndarray], lr: float, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params, self.lr, self.wd, self.betas, self.eps = params, lr, weight_decay, betas, eps
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, grads: dict[str, np.ndarray], lr: float | None = None) -> None:
        lr = self.lr if lr is None else lr
        self.t += 1
        b1, b2 = self.betas
        for k, p in self.params.items():
            g = grads[k]
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
            mh = self.m[k] / (1 - b1**self.t)
            vh = self.v[k] / (1 - b2**self.t)
            if self.wd and not k.endswith("bias") and "bias_" not in k:
                p -= lr * self.wd * p
            p -= lr * mh / (np.sqrt(vh) + self.eps)
