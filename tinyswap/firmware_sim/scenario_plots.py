"""The scenario runner's plots (matplotlib's Agg canvas, without pyplot: no display needed).

`timeline.png`: the device's simulated timeline, one row per kind of event (boots, OTA
installs, swaps, activations, metadata commits, inference batches, flash writes, power cuts
and reboots, idle time). Device operations take milliseconds while a scenario may idle for
hours, so idle stretches much longer than the active time are drawn compressed (hatched and
labelled with their real length) and the x ticks show the real simulated time; spans shorter
than a pixel are widened to stay visible.

`flash_ops.png`: erases, programs and reads per step (all flash parts), and the cumulative
counts; steps that lost power are marked red.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

# (row label, colour, event names on the device track or categories)
ROWS: tuple[tuple[str, str], ...] = (
    ("boot", "#1f77b4"),
    ("OTA install", "#ff7f0e"),
    ("swap / rollback / delete", "#2ca02c"),
    ("activate / confirm", "#9467bd"),
    ("metadata commit", "#8c564b"),
    ("inference", "#17becf"),
    ("flash writes", "#7f7f7f"),
    ("power", "#d62728"),
    ("idle", "#c7c7c7"),
)
_ROW_OF = {"provision": "boot", "boot": "boot", "install": "OTA install", "swap": "swap / rollback / delete",
           "rollback": "swap / rollback / delete", "delete": "swap / rollback / delete",
           "prefetch": "swap / rollback / delete", "activate": "activate / confirm", "confirm": "activate / confirm",
           "commit": "metadata commit", "infer": "inference"}


def _figure(**kw: Any) -> Any:
    """A figure on its own Agg canvas: no pyplot, no global backend state touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kw)
    FigureCanvasAgg(fig)
    return fig


def _fmt_time(seconds: float, span: float) -> str:
    if span < 10:
        return f"{seconds:.3g} s" if seconds < 1 else f"{seconds:.2f} s"
    if span < 2 * 3600:
        m, s = divmod(seconds, 60)
        return f"{int(m)}:{s:04.1f}"
    h, rest = divmod(seconds, 3600)
    return f"{int(h)}:{int(rest // 60):02d}"


def _duration(seconds: float) -> str:
    """Compact: "2h59", "58m", "59s", "250ms" (fits inside a compressed idle box)."""
    seconds = round(seconds, 3)
    if seconds >= 59.5:
        h, m = divmod(int(round(seconds / 60)), 60)
        return (f"{h}h" + (f"{m:02d}" if m else "")) if h else f"{m}m"
    if seconds >= 1:
        return f"{seconds:.0f}s"
    return f"{seconds * 1e3:.0f}ms"


def _compression(events: Sequence[Any], end: float) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float]]]:
    """Breakpoints (real, drawn) of the piecewise-linear time axis, and the idle spans."""
    idle = sorted((e.ts, e.ts + e.dur) for e in events if e.cat == "idle" and e.dur > 0)
    total_idle = sum(b - a for a, b in idle)
    active = max(end - total_idle, 1e-9)
    xs, ys = [0.0], [0.0]
    if idle and total_idle > 2 * active:
        cap = 0.08 * active  # an idle stretch is drawn at most this wide
        for a, b in idle:
            ys.append(ys[-1] + (a - xs[-1]))
            xs.append(a)
            ys.append(ys[-1] + min(b - a, cap))
            xs.append(b)
    ys.append(ys[-1] + max(end - xs[-1], 0.0))
    xs.append(max(end, xs[-1]))
    return np.array(xs), np.array(ys), idle


def _ticks(width: float, compressed: list[tuple[float, float]], count: int = 9) -> list[float]:
    """Evenly spaced ticks on the drawn axis, moved out of compressed idle stretches (whose
    inside has no meaningful time) to their nearest edge, without crowding."""
    out: list[float] = []
    for t in np.linspace(0, width, count):
        for a, b in compressed:
            if a < t < b:
                t = a if t - a < b - t else b
        if all(abs(t - u) > width / (2.5 * count) for u in out):
            out.append(float(t))
    for a, b in compressed:  # both edges of a compressed stretch are worth a label
        for t in (a, b):
            if all(abs(t - u) > width / (2.5 * count) for u in out):
                out.append(float(t))
    return sorted(out)


def plot_timeline(events: Sequence[Any], path: str | Path, *, title: str) -> Path:
    """Draw the device timeline (`Timeline.events`) into `path`."""
    path = Path(path)
    end = max([e.ts + e.dur for e in events] + [1e-6])
    xs, ys, idle = _compression(events, end)

    def f(t: float) -> float:
        return float(np.interp(t, xs, ys))

    width = ys[-1]
    min_w = width * 0.0025
    rows = [r for r, _ in ROWS]
    colour = dict(ROWS)
    ypos = {r: len(rows) - 1 - i for i, r in enumerate(rows)}
    fig = _figure(figsize=(14, 5.8))
    ax = fig.subplots()
    spans: dict[str, list[tuple[float, float]]] = {r: [] for r in rows}
    failed: dict[str, list[tuple[float, float]]] = {r: [] for r in rows}
    labels: list[tuple[float, str, str]] = []
    for e in events:
        if e.ph != "X":
            continue
        if e.cat == "idle":
            row = "idle"
        elif e.cat == "flash":
            if e.name not in ("program", "erase"):
                continue
            row = "flash writes"
        else:
            row = _ROW_OF.get(e.name)
            if row is None or e.track != "device":
                continue
        x0, x1 = f(e.ts), f(e.ts + e.dur)
        seg = (x0, max(x1 - x0, min_w))
        (failed if "error" in e.args else spans)[row].append(seg)
        if row in ("OTA install", "swap / rollback / delete") and e.args.get("name"):
            labels.append((x0, row, f"{e.args['name']} {e.args.get('version') or ''}".strip()))
    for row in rows:
        y = ypos[row]
        if row == "idle":
            for a, b in idle:
                x0, x1 = f(a), f(b)
                ax.broken_barh([(x0, x1 - x0)], (y - 0.35, 0.7), facecolors=colour[row], hatch="//",
                               edgecolor="#888888", linewidth=0.5)
                if x1 - x0 > width * 0.015:
                    ax.text((x0 + x1) / 2, y, _duration(b - a), ha="center", va="center", fontsize=6.5)
            continue
        if spans[row]:
            ax.broken_barh(spans[row], (y - 0.35, 0.7), facecolors=colour[row], edgecolor=colour[row], linewidth=0.3)
        if failed[row]:
            ax.broken_barh(failed[row], (y - 0.35, 0.7), facecolors="white", edgecolor="#d62728", hatch="xx",
                           linewidth=1.0)
    # adapter names above installs and swaps, skipping ones that would overlap
    last: dict[str, float] = {}
    for x0, row, text in sorted(labels):
        if x0 - last.get(row, -1e18) < width * 0.07:
            continue
        last[row] = x0
        ax.text(x0, ypos[row] + 0.42, text, fontsize=6.5, va="bottom", ha="left", color="#333333")
    # power cuts and reboots
    cuts = [f(e.ts) for e in events if e.ph == "i" and e.cat == "power" and e.name == "power cut"]
    boots = [f(e.ts) for e in events if e.ph == "i" and e.cat == "power" and e.name == "reboot"]
    yp = ypos["power"]
    if cuts:
        ax.scatter(cuts, [yp + 0.15] * len(cuts), marker="X", s=90, color="#d62728", zorder=5, label="power cut")
        for x in cuts:
            ax.axvline(x, color="#d62728", linestyle="--", linewidth=0.8, alpha=0.6, zorder=1)
    if boots:
        ax.scatter(boots, [yp - 0.2] * len(boots), marker="^", s=60, color="#1f77b4", zorder=5, label="reboot")
    if any(failed.values()):
        ax.broken_barh([(0, 0)], (0, 0), facecolors="white", edgecolor="#d62728", hatch="xx",
                       label="interrupted by a power cut or refused")
    if cuts or boots or any(failed.values()):
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, framealpha=0.9)
    ax.set_yticks([ypos[r] for r in rows])
    ax.set_yticklabels(rows, fontsize=9)
    ax.set_ylim(-0.7, len(rows) - 0.2)
    ax.set_xlim(0, width * 1.01)
    ticks = _ticks(width, [(f(a), f(b)) for a, b in idle if f(b) - f(a) < 0.999 * (b - a)])
    kept, names = [], []
    for t in ticks:  # two ticks reading the same (h:min near a compressed stretch): keep one
        name = _fmt_time(float(np.interp(t, ys, xs)), end)
        if name not in names:
            kept.append(t)
            names.append(name)
    ax.set_xticks(kept)
    ax.set_xticklabels(names, fontsize=8)
    unit = "s" if end < 10 else ("min:s" if end < 2 * 3600 else "h:min")
    compressed = bool(idle) and len(xs) > 2
    ax.set_xlabel(f"simulated time ({unit})" + ("; idle stretches (hatched) drawn compressed, labelled with their "
                                               "real length" if compressed else ""))
    ax.grid(axis="x", linestyle=":", alpha=0.5)
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_flash_ops(steps: Sequence[Mapping[str, Any]], path: str | Path, *, title: str) -> Path:
    """Erases, programs and reads per step (summed over flash parts) and cumulative."""
    path = Path(path)
    kinds = (("erase_ops", "erases", "#d62728"), ("program_ops", "programs", "#ff7f0e"),
             ("read_ops", "reads", "#1f77b4"))
    n = len(steps)
    counts = {k: np.array([sum(p[k] for p in s["flash"].values()) for s in steps], dtype=float) for k, _, _ in kinds}
    fig = _figure(figsize=(max(10, 0.45 * n + 4), 7.5))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    x = np.arange(n)
    w = 0.27
    for j, (k, label, c) in enumerate(kinds):
        top.bar(x + (j - 1) * w, counts[k], w, label=label, color=c)
        bottom.plot(x, np.cumsum(counts[k]), marker="o", markersize=3, label=label, color=c)
    top.set_yscale("symlog", linthresh=1)
    top.set_ylabel("operations in the step (log)")
    top.legend(fontsize=8, loc="upper left")
    top.grid(axis="y", linestyle=":", alpha=0.5)
    top.set_title(title, fontsize=11)
    bottom.set_yscale("symlog", linthresh=1)
    bottom.set_ylabel("cumulative operations (log)")
    bottom.grid(axis="y", linestyle=":", alpha=0.5)
    bottom.legend(fontsize=8, loc="upper left")
    lost = [i for i, s in enumerate(steps) if s.get("outcome") == "power lost"]
    for i in lost:
        for ax in (top, bottom):
            ax.axvspan(i - 0.5, i + 0.5, color="#d62728", alpha=0.12, zorder=0)
    names = []
    for s in steps:
        extra = s.get("target") or ""
        extra = extra if isinstance(extra, str) else "+".join(extra)
        names.append(f"{s['index']} {s['kind']}" + (f" {extra}" if extra else ""))
    bottom.set_xticks(x)
    bottom.set_xticklabels(names, rotation=60, ha="right", fontsize=7.5)
    for i, lab in enumerate(bottom.get_xticklabels()):
        if i in lost:
            lab.set_color("#d62728")
        elif steps[i].get("outcome") not in ("ok", None):
            lab.set_color("#9467bd")
    bottom.set_xlabel("step (red: power lost during the step; purple: an error, expected or not)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


__all__ = ["plot_flash_ops", "plot_timeline"]
