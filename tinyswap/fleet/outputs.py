"""The fleet run's files: report.json, the plots (PNG, matplotlib's Agg backend as
`firmware_sim/scenario_plots.py` uses it) and tier B's Perfetto trace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAX_TRACE_DEVICES = 200  # the trace keeps the first devices' timelines: a browser opens it


def write_outputs(report: dict[str, Any], events: list[dict[str, Any]], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    pids = sorted({e["pid"] for e in events})[:MAX_TRACE_DEVICES]
    keep = set(pids)
    trace = {"traceEvents": [e for e in events if e["pid"] in keep]
             + [{"name": "process_name", "ph": "M", "pid": p, "args": {"name": f"device {p}"}} for p in pids],
             "displayTimeUnit": "ms"}
    paths = {"trace": out / "trace.json", "rollout": out / "rollout.png"}
    paths["trace"].write_text(json.dumps(trace) + "\n")
    _plot_rollout(report, paths["rollout"])
    if report.get("federated"):
        paths["federated"] = out / "federated.png"
        _plot_federated(report["federated"], paths["federated"])
    report["outputs"] = {k: str(v) for k, v in paths.items()}
    (out / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    return paths


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_rollout(report: dict[str, Any], path: Path) -> None:
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for release in report["releases"]:
        points = [(0.0, 0.0)]
        for i, w in enumerate(release["waves"]):
            points.append((w["end_hours"], w["exposed_fraction"]))
            if "rollback" in w:
                points.append((w["end_hours"], 0.0))
        start = release["waves"][0]["end_hours"] - 1e-9
        xs = [p[0] for p in points]
        xs[0] = start - 1
        label = release["name"] + (f" (halted at {release['halted_wave']})" if release["halted_wave"] else "")
        line, = ax1.step(xs, [p[1] * 100 for p in points], where="post", label=label)
        if release["halted_wave"]:
            halt = next(w for w in release["waves"] if "rollback" in w)
            ax1.plot([halt["end_hours"]], [halt["exposed_fraction"] * 100], "x", color=line.get_color(), ms=10)
            ax1.annotate(f"gate failed: halted, rolled back\n({halt['exposed']} devices had it)",
                         (halt["end_hours"], halt["exposed_fraction"] * 100), textcoords="offset points",
                         xytext=(-150, 20), fontsize=7, arrowprops={"arrowstyle": "->"})
        accuracies = [(w["end_hours"], d, a["candidate"] - a["current"]) for w in release["waves"]
                      for d, a in w["health"]["accuracy"].items()]
        for domain in sorted({d for _, d, _ in accuracies}):
            pts = [(h, v * 100) for h, d, v in accuracies if d == domain]
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"{release['name']} {domain}")
    ax1.set_ylabel("fleet running it (%)")
    ax1.set_yscale("symlog", linthresh=1)
    ax1.legend(fontsize=7)
    ax1.set_title(f"{report['scenario']}: exposure per release (max bad exposure "
                  f"{report['max_bad_exposure']:.3%}, bricked {report['bricked']})")
    ax2.axhline(0, color="grey", lw=0.5)
    ax2.set_ylabel("shadow accuracy, candidate - current (points)")
    ax2.set_xlabel("simulated hours")
    ax2.legend(fontsize=6, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_federated(federated: dict[str, Any], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for method, rounds in federated["accuracy_by_method"].items():
        ax.plot(range(len(rounds) + 1), [federated["base_accuracy"] * 100] + [a * 100 for a in rounds], "o-",
                label=method)
    ax.set_xlabel("round")
    ax.set_ylabel(f"held-out accuracy on {federated['domain']} (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["write_outputs"]
