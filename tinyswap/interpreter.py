"""`tinyswap.Interpreter`: a drop-in for the `tf.lite.Interpreter` surface, bit-exact with TFLM.

The model buffer is never copied: constant tensors are NumPy views into it, so bytes written
into a writable buffer (bytearray, mmap) between two `invoke()` calls are used by the second,
as on a microcontroller that reads its model in place from flash. Activations live in one
arena laid out by `tinyswap.planner`, whose size is what a firmware build must reserve.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Sequence

import numpy as np

# Importing the package registers every kernel (one explicit import line per op module).
import tinyswap.kernels  # noqa: F401
from tinyswap.errors import InputFileError, InterpreterError, KernelError, ModelError, TinySwapError, UnsupportedOpError
from tinyswap.files import read_bytes
from tinyswap.kernels.base import (
    Kernel,
    Prepared,
    PrepareContext,
    Profile,
    Step,
    TensorQuant,
    TensorSpec,
    eval_step,
    plan_budget,
)
from tinyswap.kernels.registry import get_kernel
from tinyswap.planner import BufferRequest, MemoryPlan, plan_memory
from tinyswap.reader import Buffer, ModelDef, TensorDef, read_model
from tinyswap.schema import NUMPY_DTYPES, TensorType
from tinyswap.threads import BlasThreadCap, blas_may_thread
from tinyswap.variables import AssignVariable, ReadVariable, ResourceVariables


# Far above any microcontroller model (their arenas are kilobytes to a few megabytes; 64 rows
# of person_detect plan about 6 MB), low enough that a hostile 500-byte model declaring huge
# tensors is refused before it allocates, or runs in under a second: every kernel's work is
# linear in its tensors (windows and MACs have bounds of their own), and at this size the
# slowest elementwise op (SOFTMAX over millions of short rows) takes about half a second.
DEFAULT_MAX_ARENA_BYTES = 32 << 20


@dataclass
class _BoundOp:
    """An operator ready to run: its kernel, frozen parameters, the arrays it reads/writes, and
    `step`, the closure that runs it (built once at `allocate_tensors`, see `Kernel.bind`)."""

    index: int
    name: str
    kernel: Kernel
    prepared: Prepared
    inputs: list[np.ndarray | None]
    outputs: list[np.ndarray]
    step: Step

    @property
    def op_name(self) -> str:
        return self.name


class _Graph:
    """One subgraph prepared to run: tensor shapes, its operators and its own arena.

    The primary subgraph is what `invoke()` runs; the others run when a CALL_ONCE operator
    calls them (a stateful model's variable initialiser)."""

    def __init__(self, owner: "Interpreter", index: int) -> None:
        self._owner = owner
        self.index = index
        model = owner._model
        self.graph = model.subgraphs[index]
        self.shapes: dict[int, tuple[int, ...]] = {t.index: t.shape for t in self.graph.tensors}
        self.constants: dict[int, np.ndarray] = {}
        fixed = owner._mutable_ranges
        for t in self.graph.tensors:
            data = model.tensor_data(t)
            if data is None:
                continue
            if fixed is not None:
                start = model.buffers[t.buffer].offset
                end = start + data.nbytes
                if not any(start < stop and lo < end for lo, stop in fixed):
                    # Outside every range that may change: an immutable copy (see `mutable_ranges`).
                    data = np.frombuffer(data.tobytes(), dtype=data.dtype).reshape(data.shape)
            self.constants[t.index] = data
        self.ops: list[_BoundOp] | None = None
        self.steps: tuple[Step, ...] = ()  # the execution plan: one closure per operator
        self.plan: MemoryPlan | None = None
        self.arena: bytearray | None = None
        self.views: dict[int, np.ndarray] = {}
        self.folded: dict[int, np.ndarray] = {}
        self.reads: list[tuple[int, int, str]] = []  # (variable id, bytes, where): checked once all are prepared
        self.threaded_blas = False  # whether a matrix product of the plan may start BLAS threads

    def where(self, op: Any) -> str:
        prefix = f"subgraph {self.index} " if self.index else ""
        return f"{prefix}operator {op.index} ({op.op_name})"

    def spec(self, index: int) -> TensorSpec:
        """The kernel-side description of a tensor: kernels never see the file's records."""
        t = self.graph.tensors[index]
        q = t.quantization
        return TensorSpec(
            index=index,
            name=t.name,
            shape=self.shapes[index],
            dtype=NUMPY_DTYPES.get(t.type),
            type_name=t.type.name,
            quantization=None if q is None else TensorQuant(q.scale, q.zero_point, q.quantized_dimension),
            constant=self.constants.get(index, self.folded.get(index)),
        )

    def allocate(self) -> None:
        """Prepare every operator (types, shapes, multipliers) and plan this subgraph's arena."""
        owner = self._owner
        graph = self.graph
        n_ops = len(graph.operators)
        self.folded = {}
        self.reads = []
        self.threaded_blas = False
        produced: dict[int, int] = {i: -1 for i in graph.inputs}
        last_use: dict[int, int] = {i: -1 for i in graph.inputs}
        resources: dict[int, int] = {}  # resource tensor -> variable id (VAR_HANDLE outputs)
        for t in graph.inputs:
            if t in self.constants:
                raise ModelError(
                    f"graph input {t} ({graph.tensors[t].name!r}) is backed by a constant buffer; "
                    "an input must be a writable activation"
                )
        # TFLM checks each declared output shape in Prepare; while every graph input keeps its
        # declared shape we do too (after resize_tensor_input, shapes follow the new inputs).
        declared_inputs = all(self.shapes[t] == graph.tensors[t].shape for t in graph.inputs)
        prepared_ops: list[tuple[Any, Prepared | None]] = []
        for op in graph.operators:
            where = self.where(op)
            for t in op.inputs:
                if t < 0 or t in self.constants:
                    continue
                if t not in produced:
                    raise ModelError(
                        f"{where}: reads tensor {t} ({graph.tensors[t].name!r}) which no earlier "
                        "operator writes and which is not a graph input"
                    )
                last_use[t] = op.index
            if op.op_name in _VARIABLE_OPS:
                prepared_ops.append((self._prepare_variable_op(op, where, resources, produced), None))
                continue
            if op.op_name == "IF":
                prepared_ops.append((_If.prepare(self, op, where, produced, last_use), None))
                continue
            kernel = get_kernel(op.op_name, where)
            for t in op.outputs:
                if t in produced or t in self.constants:
                    raise ModelError(f"{where}: writes tensor {t}, which is already written or constant")
                if graph.tensors[t].type not in NUMPY_DTYPES:
                    raise UnsupportedOpError(
                        f"{where}: output tensor {t} has type {graph.tensors[t].type.name}"
                    )
                produced[t] = op.index
                last_use.setdefault(t, op.index)
            for t in op.inputs:
                if t in resources:
                    raise ModelError(f"{where}: reads resource tensor {t}, which only variable operators take")
            ctx = PrepareContext(
                op_index=op.index,
                op_name=op.op_name,
                options=MappingProxyType(op.options),
                inputs=[None if t < 0 else self.spec(t) for t in op.inputs],
                outputs=[self.spec(t) for t in op.outputs],
                profile=owner._profile,
                num_threads=owner._num_threads,
            )
            prepared = kernel.run_prepare(ctx)
            if len(prepared.output_shapes) != len(op.outputs):
                raise ModelError(f"{where}: kernel produced {len(prepared.output_shapes)} shapes")
            for t, shape in zip(op.outputs, prepared.output_shapes):
                computed = tuple(int(d) for d in shape)
                declared = graph.tensors[t].shape
                if declared_inputs and computed != declared:
                    raise ModelError(
                        f"{where}: output tensor {t} ({graph.tensors[t].name!r}) is declared with shape "
                        f"{declared}, but the operator computes {computed}"
                    )
                self.shapes[t] = computed
            if prepared.folded is not None:
                self.folded.update(zip(op.outputs, prepared.folded))
            self.threaded_blas |= blas_may_thread(*prepared.matmul)
            prepared_ops.append((kernel, prepared))
        for t in graph.outputs:
            if t not in produced and t not in self.constants:
                raise ModelError(f"graph output {t} ({graph.tensors[t].name!r}) is never written")
            if t in resources:
                raise ModelError(f"graph output {t} ({graph.tensors[t].name!r}) is a resource handle")
            last_use[t] = n_ops
        for t in graph.tensors:
            if t.is_variable:
                raise UnsupportedOpError(f"tensor {t.index} ({t.name!r}) is a variable tensor")

        if owner._preserve_all:
            last_use = {t: n_ops for t in last_use}
        requests = [
            BufferRequest(t, self._nbytes(t), produced[t], last_use[t])
            for t in produced
            if t not in self.constants and t not in resources
        ]
        plan = plan_memory(requests)
        if plan.arena_bytes > owner._max_arena_bytes:
            raise ModelError(
                f"the activations need a {plan.arena_bytes}-byte arena, over the limit of "
                f"{owner._max_arena_bytes} bytes (raise max_arena_bytes= if this model is genuine)"
            )
        self.plan = plan
        self.arena = bytearray(plan.arena_bytes)
        self.views = {}
        for req in requests:
            spec = graph.tensors[req.tensor]
            dtype = NUMPY_DTYPES[spec.type]
            self.views[req.tensor] = np.frombuffer(
                self.arena, dtype=dtype, count=req.size // dtype.itemsize, offset=plan.offsets[req.tensor]
            ).reshape(self.shapes[req.tensor])
        self.ops = []
        for op, (kernel, prepared) in zip(graph.operators, prepared_ops):
            if kernel is None:  # VAR_HANDLE is resolved at prepare and does nothing at invoke
                continue
            inputs = [None if t < 0 or t in resources else self.array(t) for t in op.inputs]
            outputs = [self.views[t] for t in op.outputs if t not in resources]
            # Kernels bind a lean step of their own; the interpreter's own operators (CALL_ONCE,
            # variables) and anything else with an `eval` run through the generic one.
            if isinstance(kernel, Kernel):
                step = kernel.bind(prepared, inputs, outputs)
            elif isinstance(kernel, _If):
                step = kernel.step(inputs, outputs)
            else:
                step = eval_step(kernel.eval, prepared, inputs, outputs)
            self.ops.append(_BoundOp(op.index, op.op_name, kernel, prepared, inputs, outputs, step))
        self.steps = tuple(bound.step for bound in self.ops)

    def _prepare_variable_op(self, op: Any, where: str, resources: dict[int, int],
                             produced: dict[int, int]) -> Any:
        """Bind CALL_ONCE, VAR_HANDLE, READ_VARIABLE and ASSIGN_VARIABLE (their TFLM Prepare checks)."""
        owner = self._owner
        graph = self.graph
        store = owner._variables
        name = op.op_name
        n_in, n_out = _VARIABLE_OPS[name]
        if len(op.inputs) != n_in or len(op.outputs) != n_out:
            raise ModelError(f"{where}: has {len(op.inputs)} inputs and {len(op.outputs)} outputs, "
                             f"expected {n_in} and {n_out}")
        if name == "CALL_ONCE":
            target = int(op.options.get("init_subgraph_index", 0))
            if not 0 < target < len(owner._model.subgraphs) or target == self.index:
                raise ModelError(f"{where}: init_subgraph_index {target} is not another subgraph of this model "
                                 f"(it has {len(owner._model.subgraphs)})")
            return _CallOnce(owner, target)
        if name == "VAR_HANDLE":
            (out,) = op.outputs
            if graph.tensors[out].type != TensorType.RESOURCE:
                raise ModelError(f"{where}: output tensor {out} has type {graph.tensors[out].type.name}, "
                                 "expected RESOURCE")
            if out in produced or out in self.constants:
                raise ModelError(f"{where}: writes tensor {out}, which is already written or constant")
            resources[out] = store.id_for(op.options.get("container"), op.options.get("shared_name"), where)
            produced[out] = op.index
            return None
        handle = op.inputs[0]
        if handle not in resources:
            raise ModelError(f"{where}: input 0 (tensor {handle}) is not a resource handle made by a VAR_HANDLE "
                             "of this subgraph")
        var_id = resources[handle]
        if name == "ASSIGN_VARIABLE":
            value = op.inputs[1]
            if value < 0 or value in resources:
                raise ModelError(f"{where}: input 1 must be the value to store")
            q = graph.tensors[value].quantization
            store.allocate(var_id, self._nbytes(value), None if q is None else int(q.zero_point[0]), where)
            return AssignVariable(store, var_id)
        (out,) = op.outputs
        if out in produced or out in self.constants:
            raise ModelError(f"{where}: writes tensor {out}, which is already written or constant")
        if graph.tensors[out].type not in NUMPY_DTYPES:
            raise UnsupportedOpError(f"{where}: output tensor {out} has type {graph.tensors[out].type.name}")
        produced[out] = op.index
        self.reads.append((var_id, self._nbytes(out), where))
        return ReadVariable(store, var_id, NUMPY_DTYPES[graph.tensors[out].type], self.shapes[out])

    def _nbytes(self, index: int) -> int:
        t = self.graph.tensors[index]
        if t.type not in NUMPY_DTYPES:
            raise UnsupportedOpError(f"tensor {index} ({t.name!r}) has unsupported type {t.type.name}")
        shape = self.shapes[index]
        if any(d < 0 for d in shape):
            raise ModelError(f"tensor {index} ({t.name!r}) has a negative dimension in shape {shape}")
        size = NUMPY_DTYPES[t.type].itemsize
        for d in shape:  # Python ints: a hostile shape cannot wrap around
            size *= d
        limit = self._owner._max_arena_bytes
        if size > limit:
            raise ModelError(
                f"tensor {index} ({t.name!r}) of shape {shape} needs {size} bytes, over the arena limit of "
                f"{limit} bytes (raise max_arena_bytes= if this model is genuine)"
            )
        return size

    def array(self, index: int) -> np.ndarray:
        return self.constants[index] if index in self.constants else self.views[index]

    def invoke(self) -> None:
        assert self.ops is not None
        done = 0
        try:  # one handler around the whole plan: nothing per operator on the way
            for step in self.steps:
                step()
                done += 1
        except TinySwapError:
            raise
        except Exception as exc:  # a kernel bug: say where it happened
            raise KernelError(f"{self.where(self.ops[done])} failed: {exc!r}") from exc


class _CallOnce:
    """CALL_ONCE: runs its subgraph on the first invoke after `allocate_tensors`, then nothing.

    As in TFLite Micro, `reset_all_variables()` does not re-arm it."""

    def __init__(self, owner: "Interpreter", subgraph: int) -> None:
        self._owner = owner
        self._subgraph = subgraph
        self._has_run = False

    def eval(self, _prepared: object, _inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        if not self._has_run:
            self._owner._graphs[self._subgraph].invoke()
            self._has_run = True
        return []


class _If:
    """IF (TFLM `kernels/if.cc`): runs the then-subgraph when the condition (a one-element bool
    tensor) is true, else the else-subgraph. As TFLM does at each invoke: the active subgraph
    must have exactly the operator's inputs after the condition, which are copied into its inputs
    byte for byte (byte lengths must agree; TFLM only debug-asserts the types); its outputs are
    copied back to the operator's (none when it has none, else exactly as many, lengths
    agreeing). Prepare checks what TFLM's does: a one-element bool condition, both indices
    below the subgraph count, and the then-subgraph's input and output counts. Each subgraph
    has its own arena here, so a copy never overwrites a tensor of the caller.
    """

    def __init__(self, owner: "Interpreter", where: str, then_index: int, else_index: int,
                 outputs: list[tuple[np.dtype, int]]) -> None:
        self._owner, self._where = owner, where
        self._branches = (else_index, then_index)
        self._outputs = outputs  # (dtype, bytes) of each operator output

    @staticmethod
    def prepare(graph: "_Graph", op: Any, where: str, produced: dict[int, int], last_use: dict[int, int]) -> "_If":
        """TFLM's Prepare checks, plus what keeps a hostile file bounded: both branches are other
        subgraphs of the file (a cycle through several is stopped when it runs), and no omitted
        (-1) input is passed on."""
        owner = graph._owner
        tensors = graph.graph.tensors
        if not op.inputs or op.inputs[0] < 0:
            raise ModelError(f"{where}: has no condition input")
        cond = op.inputs[0]
        if tensors[cond].type != TensorType.BOOL or int(np.prod(graph.shapes[cond], dtype=np.int64)) != 1:
            raise ModelError(f"{where}: the condition (tensor {cond}) must be a bool tensor of one element, got "
                             f"{tensors[cond].type.name} of shape {graph.shapes[cond]}")
        n_subgraphs = len(owner._model.subgraphs)
        branches = []
        for name in ("then_subgraph_index", "else_subgraph_index"):
            target = int(op.options.get(name, 0))
            if not 0 < target < n_subgraphs or target == graph.index:
                raise ModelError(f"{where}: {name} {target} is not another subgraph of this model "
                                 f"(it has {n_subgraphs})")
            branches.append(owner._model.subgraphs[target])
        then_graph, else_graph = branches
        n_in, n_out = len(op.inputs) - 1, len(op.outputs)
        if len(then_graph.inputs) != n_in or len(then_graph.outputs) != n_out:
            raise ModelError(f"{where}: the then-subgraph has {len(then_graph.inputs)} inputs and "
                             f"{len(then_graph.outputs)} outputs; the operator passes {n_in} and takes {n_out}")
        del else_graph  # checked when it runs, as TFLM does
        if any(t < 0 for t in op.inputs[1:]):
            raise ModelError(f"{where}: an omitted input (-1) cannot be passed to a subgraph")
        outputs = []
        for t in op.outputs:
            if t in produced or t in graph.constants:
                raise ModelError(f"{where}: writes tensor {t}, which is already written or constant")
            nbytes = graph._nbytes(t)  # refuses types NumPy cannot hold
            outputs.append((NUMPY_DTYPES[tensors[t].type], nbytes))
            produced[t] = op.index
            last_use.setdefault(t, op.index)
        return _If(owner, where, *(int(op.options.get(n, 0)) for n in ("then_subgraph_index", "else_subgraph_index")),
                   outputs)

    def eval(self, _prepared: object, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        owner = self._owner
        condition = inputs[0]
        assert condition is not None
        branch = owner._graphs[self._branches[bool(condition.reshape(-1)[0])]]
        if owner._if_depth >= len(owner._graphs):
            raise ModelError(f"{self._where}: IF operators call each other in a cycle")
        which = f"subgraph {branch.index}"
        if len(branch.graph.inputs) != len(inputs) - 1:
            raise InterpreterError(f"{self._where}: {which} has {len(branch.graph.inputs)} inputs, the operator "
                                   f"passes {len(inputs) - 1} (TFLite Micro fails this invoke too)")
        n_out = len(branch.graph.outputs)
        if n_out and n_out != len(self._outputs):
            raise InterpreterError(f"{self._where}: {which} has {n_out} outputs, the operator takes "
                                   f"{len(self._outputs)} (TFLite Micro fails this invoke too)")
        for i, t in enumerate(branch.graph.inputs):
            source, target = inputs[i + 1], branch.views.get(t)
            assert source is not None
            if target is None:
                raise ModelError(f"{self._where}: input {i} of {which} is a constant and cannot be written")
            self._check(f"input {i + 1}", source.nbytes, target.nbytes)
            target.reshape(-1).view(np.uint8)[:] = source.reshape(-1).view(np.uint8)
        owner._if_depth += 1
        try:
            branch.invoke()
        finally:
            owner._if_depth -= 1
        results = []
        for (dtype, nbytes), t in zip(self._outputs, branch.graph.outputs):
            value = branch.array(t)
            self._check("an output", value.nbytes, nbytes)
            results.append(value.reshape(-1).view(np.uint8).view(dtype))  # bytes, as TFLM's memcpy
        return results

    def step(self, inputs: list[np.ndarray | None], outputs: list[np.ndarray]) -> Step:
        """The plan step: `eval`'s checks and copies, worked out once per branch the first time
        it runs (the subgraphs' arenas exist by then and stay until the next allocation), so
        that an invoke only reads the condition and copies bytes. A branch whose check fails
        raises the same error each time it is taken, as `eval` does."""
        condition = inputs[0]
        assert condition is not None
        flag = condition.reshape(-1)
        outs = [o.reshape(-1).view(np.uint8) for o in outputs]
        bound: dict[int, tuple[list[tuple[np.ndarray, np.ndarray]], "_Graph", list[tuple[np.ndarray, np.ndarray]]]] = {}
        owner = self._owner

        def bind_branch(index: int) -> tuple[list, "_Graph", list]:
            branch = owner._graphs[index]
            results = self.eval(None, inputs)  # every check of an invoke, and a first run
            copies_in = [(branch.views[t].reshape(-1).view(np.uint8), source.reshape(-1).view(np.uint8))
                         for t, source in zip(branch.graph.inputs, inputs[1:]) if source is not None]
            copies_out = [(out, branch.array(t).reshape(-1).view(np.uint8))
                          for out, t in zip(outs, branch.graph.outputs)]
            for out, result in zip(outs, results):
                np.copyto(out, result.view(np.uint8))
            return copies_in, branch, copies_out

        def step() -> None:
            index = self._branches[bool(flag[0])]
            plan = bound.get(index)
            if plan is None:
                bound[index] = bind_branch(index)
                return
            copies_in, branch, copies_out = plan
            for target, source in copies_in:
                np.copyto(target, source)
            if owner._if_depth >= len(owner._graphs):
                raise ModelError(f"{self._where}: IF operators call each other in a cycle")
            owner._if_depth += 1
            try:
                branch.invoke()
            finally:
                owner._if_depth -= 1
            for target, source in copies_out:
                np.copyto(target, source)

        return step

    def _check(self, what: str, nbytes: int, other_nbytes: int) -> None:
        if nbytes != other_nbytes:
            raise InterpreterError(f"{self._where}: {what} has {nbytes} bytes, the subgraph's tensor {other_nbytes} "
                                   "(TFLite Micro fails this invoke too; a model with IF operators runs at the "
                                   "batch it was built for)")


# Operators the interpreter runs itself (they touch subgraphs and variables, which kernels never
# see), with their input and output counts.
_VARIABLE_OPS: dict[str, tuple[int, int]] = {
    "CALL_ONCE": (0, 0),
    "VAR_HANDLE": (0, 1),
    "READ_VARIABLE": (1, 1),
    "ASSIGN_VARIABLE": (2, 0),
}


class Interpreter:
    """Runs a `.tflite` model with TFLite Micro's integer arithmetic, in NumPy.

    `profile="tflm"` (default) reproduces the TFLite Micro reference kernels bit for bit;
    `profile="litert"` reproduces LiteRT's `BUILTIN_REF` resolver where the two differ.
    Stateful models (resource variables, `tinyswap.variables`) keep their state from one
    `invoke()` to the next; `reset_all_variables()` resets it as TFLite Micro's `Reset()` does.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        model_content: Buffer | None = None,
        *,
        profile: Profile | str = Profile.TFLM,
        num_threads: int | None = None,
        max_arena_bytes: int = DEFAULT_MAX_ARENA_BYTES,
        experimental_preserve_all_tensors: bool = False,
        mutable_ranges: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        """`mutable_ranges`: for a writable `model_content` (a bytearray that adapter slots are
        written into), the (offset, length) byte ranges that may change between invokes. Every
        constant whose bytes lie outside them is copied once into immutable memory, so that
        kernels convert its weights and fold its biases at `allocate_tensors`
        (`kernels.base.is_immutable`); constants inside them are read in place on every
        invoke. Without it every constant of a writable model is read in place; a model in
        `bytes` cannot change and needs nothing."""
        if (model_path is None) == (model_content is None):
            raise InterpreterError("give exactly one of model_path= or model_content=")
        if model_path is not None:
            try:
                model_content = read_bytes(model_path, "model")
            except InputFileError as exc:
                raise ModelError(f"cannot read model file {os.fspath(model_path)!r}: {exc.problem}") from exc
        try:
            self._profile = Profile(profile)
        except ValueError:
            raise InterpreterError(
                f"unknown profile {profile!r}; choose one of {[p.value for p in Profile]}"
            ) from None
        self._max_arena_bytes = max_arena_bytes
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise InterpreterError(f"num_threads must be a positive integer or None, got {num_threads!r}")
        # As in tf.lite, num_threads is a budget for intra-op parallelism; None means one
        # thread, so results and timings are reproducible unless a caller asks for more. It
        # caps NumPy's BLAS threads during invoke() too (`tinyswap.threads`).
        self._num_threads = num_threads or 1
        self._blas_cap = BlasThreadCap(self._num_threads)
        # As in tf.lite: keep every intermediate readable after invoke() (no arena reuse).
        self._preserve_all = experimental_preserve_all_tensors
        self._mutable_ranges = None if mutable_ranges is None else tuple(
            (int(offset), int(offset) + int(length)) for offset, length in mutable_ranges)
        self._model: ModelDef = read_model(model_content)  # type: ignore[arg-type]
        self._graph = self._model.main
        self._variables = ResourceVariables()
        self._graphs = [_Graph(self, i) for i in range(len(self._model.subgraphs))]
        self._main = self._graphs[0]
        self._if_depth = 0  # IF operators running now, one inside another (bounds a cyclic file)
        self._shapes = self._main.shapes
        self._threaded_blas = True  # until allocate_tensors knows the plan's matrix products
        self._allocated = False

    # -- model facts ------------------------------------------------------------------------
    @property
    def model(self) -> ModelDef:
        return self._model

    @property
    def profile(self) -> Profile:
        return self._profile

    @property
    def arena_bytes(self) -> int:
        """Peak activation bytes of the current plan (after `allocate_tensors`): the primary
        subgraph's arena plus those of the subgraphs it calls (each has its own here)."""
        self._require_allocated()
        return sum(g.plan.arena_bytes for g in self._graphs if g.plan is not None)

    @property
    def variable_bytes(self) -> int:
        """Bytes of resource-variable state kept between invokes (0 for a stateless model)."""
        self._require_allocated()
        return self._variables.nbytes

    @property
    def memory_plan(self) -> MemoryPlan:
        """The primary subgraph's activation plan."""
        self._require_allocated()
        assert self._main.plan is not None
        return self._main.plan

    # -- allocation -------------------------------------------------------------------------
    def allocate_tensors(self) -> None:
        """Prepare every operator of every subgraph and plan the arenas. Variables start afresh."""
        self._allocated = False
        self._variables = ResourceVariables()
        self._threaded_blas = True
        with plan_budget():  # bounded scratch and tables however many operators a model has
            for g in self._graphs:  # in file order, as TFLite Micro prepares them
                g.allocate()
        for g in self._graphs:
            for var_id, nbytes, where in g.reads:
                self._variables.check_read(var_id, nbytes, where)
        self._threaded_blas = any(g.threaded_blas for g in self._graphs)
        self._allocated = True

    def _require_allocated(self) -> None:
        if not self._allocated:
            raise InterpreterError("call allocate_tensors() first (and again after resize_tensor_input)")

    # -- the tf.lite.Interpreter surface ---------------------------------------------------
    def _details(self, index: int) -> dict[str, Any]:
        t: TensorDef = self._graph.tensors[index]
        q = t.quantization
        scales = q.scale.copy() if q is not None else np.zeros(0, np.float32)
        zero_points = q.zero_point.astype(np.int32) if q is not None else np.zeros(0, np.int32)
        return {
            "name": t.name,
            "index": index,
            "shape": np.array(self._shapes[index], dtype=np.int32),
            "shape_signature": np.array(t.shape_signature or self._shapes[index], dtype=np.int32),
            "dtype": NUMPY_DTYPES[t.type].type if t.type in NUMPY_DTYPES else None,
            "quantization": (float(scales[0]), int(zero_points[0])) if q is not None and scales.size == 1 else (0.0, 0),
            "quantization_parameters": {
                "scales": scales,
                "zero_points": zero_points,
                "quantized_dimension": q.quantized_dimension if q is not None else 0,
            },
            "sparsity_parameters": {},
        }

    def get_input_details(self) -> list[dict[str, Any]]:
        return [self._details(i) for i in self._graph.inputs]

    def get_output_details(self) -> list[dict[str, Any]]:
        return [self._details(i) for i in self._graph.outputs]

    def get_tensor_details(self) -> list[dict[str, Any]]:
        return [self._details(t.index) for t in self._graph.tensors]

    def set_tensor(self, tensor_index: int, value: np.ndarray) -> None:
        self._require_allocated()
        if tensor_index not in self._graph.inputs:
            raise InterpreterError(
                f"tensor {tensor_index} is not a graph input; inputs are {list(self._graph.inputs)}"
            )
        view = self._main.views[tensor_index]
        value = np.asarray(value)
        if value.dtype != view.dtype:
            raise InterpreterError(
                f"input tensor {tensor_index} ({self._graph.tensors[tensor_index].name!r}) has type "
                f"{view.dtype}, got {value.dtype}"
            )
        if value.shape != view.shape:
            raise InterpreterError(
                f"input tensor {tensor_index} has shape {view.shape}, got {value.shape} "
                "(use resize_tensor_input and allocate_tensors to change it)"
            )
        np.copyto(view, value)

    def get_tensor(self, tensor_index: int) -> np.ndarray:
        self._require_allocated()
        if not 0 <= tensor_index < len(self._graph.tensors):
            raise InterpreterError(f"tensor index {tensor_index} out of range [0, {len(self._graph.tensors)})")
        main = self._main
        if tensor_index in main.constants:
            return main.constants[tensor_index].copy()
        if tensor_index not in main.views:
            raise InterpreterError(f"tensor {tensor_index} is neither constant nor computed")
        return main.views[tensor_index].copy()

    def resize_tensor_input(self, input_index: int, tensor_size: Sequence[int], strict: bool = False) -> None:
        if input_index not in self._graph.inputs:
            raise InterpreterError(f"tensor {input_index} is not a graph input")
        shape = tuple(int(d) for d in tensor_size)
        old = self._shapes[input_index]
        if len(shape) != len(old) or any(d <= 0 for d in shape):
            raise InterpreterError(f"cannot resize input {input_index} from {old} to {shape}")
        if strict:
            signature = self._graph.tensors[input_index].shape_signature or old
            for d, (new, sig) in enumerate(zip(shape, signature)):
                if sig != -1 and new != sig:
                    raise InterpreterError(f"strict resize: dimension {d} of input {input_index} is fixed at {sig}")
        self._shapes[input_index] = shape
        self._allocated = False  # shapes changed: prepare again

    @property
    def num_threads(self) -> int:
        """Threads an invoke may use: batch slices and BLAS (capped while invoking a plan with a
        matrix product large enough to start BLAS threads; smaller ones run on one thread anyway)."""
        return self._num_threads

    def invoke(self) -> None:
        self._require_allocated()
        if not self._threaded_blas:  # no product large enough to start a BLAS thread: nothing to cap
            self._main.invoke()
            return
        changed = self._blas_cap.cap()
        try:
            self._main.invoke()
        finally:
            self._blas_cap.restore(changed)

    def reset_all_variables(self) -> None:
        """Reset every resource variable to its default (TFLite Micro's `MicroInterpreter::Reset`:
        the zero point of the value that first sized it, else zero; the initialising subgraph
        does not run again)."""
        self._require_allocated()
        self._variables.reset()

    # -- conveniences -----------------------------------------------------------------------
    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """Set every graph input (resizing the batch when needed), invoke, return the outputs."""
        graph_inputs = self._graph.inputs
        if len(inputs) != len(graph_inputs):
            raise InterpreterError(f"model has {len(graph_inputs)} inputs, got {len(inputs)}")
        arrays = [np.asarray(x) for x in inputs]
        for index, array in zip(graph_inputs, arrays):
            if array.shape != self._shapes[index]:
                self.resize_tensor_input(index, array.shape)
        if not self._allocated:
            self.allocate_tensors()
        for index, array in zip(graph_inputs, arrays):
            self.set_tensor(index, array)
        self.invoke()
        return [self.get_tensor(i) for i in self._graph.outputs]

    __call__ = run


def load(path: str | os.PathLike[str], *, writable: bool = False) -> Buffer:
    """Read a model file; `writable=True` returns a bytearray that slots can be patched into."""
    data = read_bytes(path, "model")
    return bytearray(data) if writable else data


__all__ = ["Interpreter", "Profile", "load"]
