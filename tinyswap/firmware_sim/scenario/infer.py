"""The `infer` step kind: rows from datasets through the device, accuracy per adapter version,
experiment outcomes per arm."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from tinyswap.errors import TinySwapError
from tinyswap.firmware_sim.device import Device
from tinyswap.firmware_sim.errors import DeviceStateError
from tinyswap.firmware_sim.scenario.fields import MAX_BATCH, MAX_ROWS, BASE, RequestSpec, ValueType, Where, param
from tinyswap.firmware_sim.scenario.registry import Step, StepContext, StepParams, step_kind
from tinyswap.router import Request

if TYPE_CHECKING:
    from tinyswap.firmware_sim.scenario.report import StepRecord
    from tinyswap.firmware_sim.scenario.runner import Run

_MODES = ("adapters", "per_row", "requests")


@step_kind("infer", target=("adapters", "dataset"), example={
    "kind": "infer", "rows": 256, "requests": [{"user": "cam-north", "task": "digits", "dataset": "rot90"},
                                               {"user": "meter-{row}", "task": "meter", "dataset": "sensor"}]})
@dataclass(frozen=True, kw_only=True)
class Infer(StepParams):
    """Run `rows` rows in invokes of `batch` rows, through `adapters` (one spec for every row),
    `per_row` (specs cycled over the rows), `requests` (router requests cycled over the rows;
    "{row}" in a string is replaced by the row number, so "user-{row}" makes distinct users;
    rows are batched per tenant), or the active set. With labels, accuracy is recorded per
    adapter version and dataset, and each routed row's correctness (1 or 0) is recorded as
    the outcome of its experiment arm."""

    dataset: str | None = param(ValueType.DATASET, default=None,
                                doc="where the rows come from; required unless every request names one")
    rows: int | None = param(ValueType.INT, minimum=1, maximum=MAX_ROWS, default=None,
                             doc="how many rows (default: the whole dataset)")
    start: int | None = param(ValueType.INT, minimum=0, default=None,
                              doc="the first row (default: where the previous step on that dataset stopped; wraps "
                                  "around)")
    batch: int = param(ValueType.INT, minimum=1, maximum=MAX_BATCH, default=64, doc="rows per invoke")
    adapters: Any = param(ValueType.ADAPTERS, default=None, doc="one adapter spec for every row")
    per_row: tuple[Any, ...] | None = param(ValueType.ADAPTERS_LIST, default=None,
                                            doc="adapter specs cycled over the rows")
    requests: tuple[RequestSpec, ...] | None = param(
        ValueType.REQUESTS, default=None,
        doc="router requests cycled over the rows: `user`, `tenant`, `task`, `session` (strings), `context` "
            "(an object), and `dataset` to draw that request's rows from another dataset")
    tenant: str | None = param(ValueType.TEXT, default=None,
                               doc="the requesting tenant of `adapters` / `per_row` / active-set rows")

    def check(self, where: Where, context: StepContext) -> None:
        modes = [m for m in _MODES if getattr(self, m) is not None]
        if len(modes) > 1:
            raise where.fail(modes[1], f"give at most one of adapters, per_row, requests (got {modes})")
        if self.requests is not None:
            if self.tenant is not None:
                raise where.fail("tenant", "routed requests carry their own tenant")
            for j, r in enumerate(self.requests):
                if r.dataset is None and self.dataset is None:
                    raise where.fail("dataset", f"request {j} names no dataset and the step has none")
        elif self.dataset is None:
            raise where.fail("dataset", "is missing")

    def run(self, run: Run, step: Step) -> dict[str, Any]:
        return _infer(run, self)

    def describe(self, record: StepRecord) -> str:
        r = record.result
        if "rows" not in r:
            return ""
        accs = ", ".join(f"{b['adapter']} on {b['dataset']} {100 * b['accuracy']:.1f}%" for b in r["by_adapter"])
        return f"{r['rows']} rows" + (f": {accs}" if accs else "")


def _infer(run: Run, step: Infer) -> dict[str, Any]:
    d = run.device
    if not d.booted:
        raise DeviceStateError("infer: the device is not booted (a power cut needs a reboot step)")
    reqs = step.requests
    # how many rows (default: the whole dataset), and which dataset each comes from
    first = step.dataset if step.dataset is not None else reqs[0].dataset if reqs else None
    n = step.rows if step.rows is not None else len(run.inputs[first].x)
    labels = [_dataset_of(reqs[r % len(reqs)], step.dataset) if reqs else step.dataset for r in range(n)]
    if step.start is not None:
        for label in set(labels):
            run.inputs[label].cursor = step.start
    rows: list[tuple[str, int]] = []
    for label in labels:
        ds = run.inputs[label]
        rows.append((label, ds.cursor % len(ds.x)))
        ds.cursor += 1
    routed: dict[str, int] = {}
    by: dict[tuple[str, str], list[int]] = {}
    invokes = 0
    for b0 in range(0, n, step.batch):
        chunk = list(range(b0, min(n, b0 + step.batch)))
        groups: list[tuple[list[int], dict[str, Any]]] = []
        if reqs:
            requests = {r: reqs[r % len(reqs)].request(r) for r in chunk}
            names = {r: d.router.route(requests[r]) for r in chunk}
            for r in chunk:
                routed[names[r]] = routed.get(names[r], 0) + 1
            for tenant in dict.fromkeys(requests[r].tenant for r in chunk):
                members = [r for r in chunk if requests[r].tenant == tenant]
                groups.append((members, {"per_row": [names[r] for r in members], "tenant": tenant}))
        elif step.per_row:
            cycle = [step.per_row[r % len(step.per_row)] for r in chunk]
            groups.append((chunk, {"per_row": cycle, "tenant": step.tenant}))
        elif step.adapters is not None:
            groups.append((chunk, {"adapters": step.adapters, "tenant": step.tenant}))
        else:
            groups.append((chunk, {"tenant": step.tenant}))
        for members, kw in groups:
            specs = kw["per_row"] if "per_row" in kw else [kw.get("adapters")] * len(members)
            known: dict[str, str] = {}  # one label per distinct spec (versions looked up once)
            tags = []
            for spec in specs:
                key = json.dumps(spec, sort_keys=True)
                if key not in known:
                    known[key] = _spec_label(d, spec)
                tags.append(known[key])
            x = np.stack([run.inputs[rows[r][0]].x[rows[r][1]] for r in members])
            out = d.infer(x, **kw)
            invokes += 1
            pred = np.asarray(out[0]).reshape(len(members), -1).argmax(axis=1)
            for k, r in enumerate(members):
                label, idx = rows[r]
                y = run.inputs[label].y
                if y is None:
                    continue
                correct = int(pred[k] == y[idx])
                cell = by.setdefault((tags[k], label), [0, 0])
                cell[0] += 1
                cell[1] += correct
                if reqs:
                    _record_outcome(d, requests[r], kw["per_row"][k], correct)
    for key, (count, correct) in by.items():
        total = run.accuracy.setdefault(key, [0, 0])
        total[0] += count
        total[1] += correct
    result: dict[str, Any] = {
        "rows": n, "invokes": invokes, "datasets": {k: labels.count(k) for k in dict.fromkeys(labels)},
        "by_adapter": [{"adapter": a, "dataset": ds, "rows": c, "correct": k, "accuracy": k / c}
                       for (a, ds), (c, k) in by.items()],
    }
    if by:
        labelled = sum(c for c, _ in by.values())
        result["accuracy"] = sum(k for _, k in by.values()) / labelled
        result["labelled_rows"] = labelled
    if reqs:
        result["routed"] = routed
        if d.router.experiments:
            result["experiments"] = d.router.metrics()
    return result


def _dataset_of(request: RequestSpec, default: str | None) -> str | None:
    return request.dataset if request.dataset is not None else default


def _spec_label(d: Device, spec: Any) -> str:
    """A readable name for an adapter spec, with the versions current now."""
    def one(name: str) -> str:
        if name == BASE:
            return BASE
        try:
            return f"{name}@{d.manager.adapter_info(name).version}"
        except TinySwapError:
            return name
    if spec is None:
        return "+".join(one(n) if w == 1 else f"{one(n)}x{w:g}" for n, w in sorted(d.status()["active"].items())) \
            or BASE
    if isinstance(spec, str):
        return one(spec)
    if isinstance(spec, Mapping):
        return "+".join(one(n) if w == 1 else f"{one(n)}x{w:g}" for n, w in spec.items())
    return "+".join(one(n) for n in spec)


def _record_outcome(d: Device, request: Request, routed: str, correct: int) -> None:
    """An outcome for the experiment that routed this request (not for a sticky session's
    earlier choice, nor for a rule's)."""
    for exp in d.router.experiments:
        if all(request.field(k) == v for k, v in exp.match.items()):
            if exp.arm(request) == routed:
                d.router.record(exp.name, request, correct)
            return


__all__ = ["Infer"]
