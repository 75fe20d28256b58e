"""The layer rules of docs/architecture.md ("Layers"), checked two ways.

Statically: every `import` in every module under `tinyswap/`, at module level and inside
functions, resolved to an absolute module name and reported as `file:line`. Dynamically: every
runtime module imported in a fresh interpreter, then `sys.modules` inspected, which also catches
imports the source does not spell out (a package `__init__` that pulls in more than it says).

The rules:
(a) the runtime imports neither the compiler (`tinyswap.export`), the simulator
    (`tinyswap.firmware_sim`), the benchmarks nor the command line, at any level; the command
    line (`tinyswap.cli`, `tinyswap.commands`) imports compiler, simulator and benchmarks only
    inside functions;
(b) the compiler knows no simulator;
(c) kernels know no graph and no adapter lifecycle;
(d) parsing (`tinyswap.reader`, `tinyswap.schema`) knows no maths;
(e) the simulator, its on-device training included, never imports the compiler (its graph
    builder, `compiler.py` / `tflite_builder.py`, above all), the benchmarks or the command line,
    at any level: a device trains and packs with the runtime's maths (`tinyswap.slot_quant`);
(f) fleets are a layer above the device: neither the runtime nor the simulator imports
    `tinyswap.fleet`, the command line imports it only inside functions, and `ray` (the
    optional `fleet` extra) is imported only by `tinyswap.fleet.ray_engine`, inside functions.

Every rule is also fed a small synthetic module that breaks it, so a checker that silently
stopped seeing imports would fail here rather than pass.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import pytest

import tinyswap

PACKAGE_DIR = Path(tinyswap.__file__).resolve().parent

# Everything in tinyswap that is not runtime: the compiler, the simulator, benchmarks, command line.
NON_RUNTIME = ("tinyswap.export", "tinyswap.firmware_sim", "tinyswap.benchmarks", "tinyswap.commands", "tinyswap.cli",
               "tinyswap.fleet")
COMMAND_LINE = ("tinyswap.cli", "tinyswap.commands")
# What the kernels must not know: the graph (reader, schema, planner, interpreter) and the
# adapter lifecycle (slots, packages, registry, swap manager, router, cache, model image).
GRAPH_AND_LIFECYCLE = tuple(f"tinyswap.{m}" for m in (
    "interpreter", "planner", "reader", "schema", "swap", "slotmap", "package", "registry", "router", "cache", "image"))
MATHS = ("tinyswap.kernels", "tinyswap.fixedpoint", "tinyswap.planner", "tinyswap.interpreter")
PARSING = ("tinyswap.reader", "tinyswap.schema")


def within(module: str, prefixes: Iterable[str]) -> bool:
    """True if `module` is one of `prefixes` or a submodule of one."""
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def is_runtime(module: str) -> bool:
    return within(module, ("tinyswap",)) and not within(module, NON_RUNTIME)


@dataclass(frozen=True)
class Rule:
    key: str
    name: str
    applies_to: Callable[[str], bool]  # the importing module
    forbidden: tuple[str, ...]  # imported module prefixes it must not reach
    # True: an import that runs only when a function is called (or never: `if TYPE_CHECKING:`)
    # is fine, only imports executed at import time count.
    lazy_allowed: bool = False


RULES = (
    Rule("a-runtime", "(a) the runtime imports no compiler, simulator, benchmarks or command line", is_runtime, NON_RUNTIME),
    Rule("a-command-line", "(a) the command line imports compiler, simulator and benchmarks only inside functions",
         lambda m: within(m, COMMAND_LINE),
         ("tinyswap.export", "tinyswap.firmware_sim", "tinyswap.benchmarks"), lazy_allowed=True),
    Rule("a-entry-point", "(a) the entry point imports the command modules only inside functions",
         lambda m: m == "tinyswap.cli", ("tinyswap.commands",), lazy_allowed=True),
    Rule("b-compiler", "(b) the compiler imports no simulator, benchmarks or command line",
         lambda m: within(m, ("tinyswap.export",)),
         ("tinyswap.firmware_sim", "tinyswap.benchmarks", "tinyswap.commands", "tinyswap.cli")),
    Rule("c-kernels", "(c) kernels import nothing about the graph or the adapter lifecycle",
         lambda m: within(m, ("tinyswap.kernels",)), GRAPH_AND_LIFECYCLE),
    Rule("d-parsing", "(d) parsing imports no maths", lambda m: within(m, PARSING), MATHS),
    Rule("e-simulator", "(e) the simulator and its training import no compiler (graph builder), benchmarks or "
         "command line", lambda m: within(m, ("tinyswap.firmware_sim",)),
         ("tinyswap.export", "tinyswap.benchmarks", "tinyswap.commands", "tinyswap.cli")),
    Rule("f-fleet-above-device", "(f) the simulator imports no fleet", lambda m: within(m, ("tinyswap.firmware_sim",)),
         ("tinyswap.fleet",)),
    Rule("f-fleet-command-line", "(f) the command line imports the fleet only inside functions",
         lambda m: within(m, COMMAND_LINE), ("tinyswap.fleet",), lazy_allowed=True),
    Rule("f-ray", "(f) only the fleet's Ray engine imports ray", lambda m: m != "tinyswap.fleet.ray_engine"
         and within(m, ("tinyswap",)), ("ray",)),
    Rule("f-ray-lazy", "(f) the Ray engine imports ray inside functions only",
         lambda m: m == "tinyswap.fleet.ray_engine", ("ray",), lazy_allowed=True),
)


@dataclass(frozen=True)
class ImportSite:
    target: str  # absolute module name (for `from a import b`: both `a` and `a.b` are recorded)
    line: int
    where: str  # "at module level", "inside a function" or "for type checking only"

    @property
    def lazy(self) -> bool:
        return self.where != "at module level"


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of a (possibly relative) `from ... import` source."""
    if level == 0:
        return name or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - (level - 1)] if level > 1 else parts
    return ".".join(parts + ([name] if name else []))


def import_sites(source: str, module: str, is_package: bool = False) -> list[ImportSite]:
    """Every import in `source`, with its line and when it runs: at import time, only when a
    function is called, or never (under `if TYPE_CHECKING:`).

    Also counts `importlib.import_module("x")` and `__import__("x")` with a literal name, the
    usual ways to hide an import from a reader.
    """
    sites: list[ImportSite] = []

    def visit(node: ast.AST, where: str) -> None:
        if isinstance(node, ast.Import):
            sites.extend(ImportSite(alias.name, node.lineno, where) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            sites.append(ImportSite(base, node.lineno, where))
            # `from tinyswap import export` imports the submodule `tinyswap.export`.
            sites.extend(ImportSite(f"{base}.{alias.name}", node.lineno, where) for alias in node.names
                         if alias.name != "*")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__"):
                sites.append(ImportSite(node.args[0].value, node.lineno, where))
        if isinstance(node, ast.If) and where == "at module level" and _is_type_checking(node.test):
            for child in node.body:
                visit(child, "for type checking only")
            for child in node.orelse:
                visit(child, where)
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and where == "at module level":
            where = "inside a function"
        for child in ast.iter_child_nodes(node):
            visit(child, where)

    visit(ast.parse(source), "at module level")
    return sites


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def violations(modules: dict[str, tuple[str, str, bool]]) -> list[str]:
    """Rule breaches in `modules` (name -> (file shown in reports, source, is_package)), one per
    import statement and rule, as `file:line: importer imports target when: rule`."""
    found: dict[tuple[str, int, str], str] = {}
    for module, (shown, source, is_package) in sorted(modules.items()):
        for site in import_sites(source, module, is_package):
            for rule in RULES:
                if rule.applies_to(module) and within(site.target, rule.forbidden) \
                        and not (site.lazy and rule.lazy_allowed):
                    # `from a.b import C` records a.b and a.b.C: report the module, not the name.
                    key = (shown, site.line, rule.name)
                    if key not in found:
                        found[key] = f"{shown}:{site.line}: {module} imports {site.target} {site.where}: {rule.name}"
    return sorted(found.values())


def tree_modules() -> dict[str, tuple[str, str, bool]]:
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        rel = path.relative_to(PACKAGE_DIR.parent)
        parts = list(rel.with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = (str(rel), path.read_text(encoding="utf-8"), is_package)
    return modules


# ------------------------------------------------------------------------- the real tree, statically

@pytest.mark.parametrize("rule", RULES, ids=[r.key for r in RULES])
def test_every_module_keeps_the_layer_rule(rule: Rule) -> None:
    modules = tree_modules()
    assert "tinyswap.cli" in modules and "tinyswap.interpreter" in modules and "tinyswap.kernels.add" in modules
    assert any(rule.applies_to(m) for m in modules), f"no module is subject to {rule.name!r}: is the rule stale?"
    broken = [v for v in violations(modules) if v.endswith(rule.name)]
    assert not broken, "layer rule broken:\n" + "\n".join(broken)


# ------------------------------------------------------------------------- the real tree, dynamically

def loaded_after_importing(modules: list[str], prefixes: Iterable[str], extra_path: str | None = None) -> list[str]:
    """Import `modules` in a fresh interpreter; the loaded modules under `prefixes`, per importer."""
    code = textwrap.dedent(f"""
        import importlib, sys
        {"sys.path.insert(0, " + repr(extra_path) + ")" if extra_path else ""}
        prefixes = {tuple(prefixes)!r}
        for name in {modules!r}:
            before = set(sys.modules)
            importlib.import_module(name)
            for new in sorted(set(sys.modules) - before):
                if any(new == p or new.startswith(p + ".") for p in prefixes):
                    print(name, "->", new)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_importing_the_runtime_loads_no_compiler_simulator_benchmarks_or_command_line() -> None:
    runtime = sorted(m for m in tree_modules() if is_runtime(m))
    assert "tinyswap.interpreter" in runtime and not any(within(m, NON_RUNTIME) for m in runtime)
    assert loaded_after_importing(runtime, NON_RUNTIME) == []


def test_importing_the_command_line_loads_no_compiler_simulator_or_benchmarks() -> None:
    cli = sorted(m for m in tree_modules() if within(m, COMMAND_LINE))
    assert loaded_after_importing(cli, ("tinyswap.export", "tinyswap.firmware_sim", "tinyswap.benchmarks")) == []


def test_importing_the_compiler_loads_no_simulator_benchmarks_or_command_line() -> None:
    compiler = sorted(m for m in tree_modules() if within(m, ("tinyswap.export",)))
    assert "tinyswap.export.compiler" in compiler
    assert loaded_after_importing(compiler, ("tinyswap.firmware_sim", "tinyswap.benchmarks", "tinyswap.commands",
                                             "tinyswap.cli")) == []


def test_importing_the_fleet_loads_no_ray_and_the_simulator_no_fleet() -> None:
    fleet = sorted(m for m in tree_modules() if within(m, ("tinyswap.fleet",)))
    assert "tinyswap.fleet.ray_engine" in fleet and "tinyswap.fleet.run" in fleet
    assert loaded_after_importing(fleet, ("ray",)) == []
    simulator = sorted(m for m in tree_modules() if within(m, ("tinyswap.firmware_sim",)))
    assert loaded_after_importing(simulator, ("tinyswap.fleet",)) == []


def test_importing_the_simulator_and_its_training_loads_no_compiler() -> None:
    simulator = sorted(m for m in tree_modules() if within(m, ("tinyswap.firmware_sim",)))
    assert "tinyswap.firmware_sim.training" in simulator and "tinyswap.firmware_sim.personalise" in simulator
    assert loaded_after_importing(simulator, ("tinyswap.export", "tinyswap.benchmarks", "tinyswap.commands",
                                              "tinyswap.cli")) == []


# ------------------------------------------------------------------------- the checkers can fail

BREACHES = [
    # (module, source, line of the breach, rule that must report it)
    ("tinyswap.swap", "from tinyswap.export.pack import pack\n", 1, "a-runtime"),
    ("tinyswap.router", "import numpy\ndef f():\n    import tinyswap.firmware_sim.device\n", 3, "a-runtime"),
    ("tinyswap.cache", "from tinyswap import benchmarks\n", 1, "a-runtime"),
    ("tinyswap.registry", "import importlib\nimportlib.import_module('tinyswap.commands.demo')\n", 2, "a-runtime"),
    ("tinyswap.cli", "from tinyswap.export.compiler import compile_model\n", 1, "a-command-line"),
    ("tinyswap.commands.demo", "import os\nimport tinyswap.firmware_sim.device as d\n", 2, "a-command-line"),
    ("tinyswap.cli", "from tinyswap.commands.demo import run\n", 1, "a-entry-point"),
    ("tinyswap.export.pack", "from tinyswap.firmware_sim.flash import Flash\n", 1, "b-compiler"),
    ("tinyswap.export.bundle", "def f():\n    from ..firmware_sim import device\n", 2, "b-compiler"),
    ("tinyswap.kernels.add", "from tinyswap.schema import TensorType\n", 1, "c-kernels"),
    ("tinyswap.kernels.conv2d", "def f():\n    from ..interpreter import Interpreter\n", 2, "c-kernels"),
    ("tinyswap.kernels", "from . import base\nfrom tinyswap import swap\n", 2, "c-kernels"),
    ("tinyswap.reader", "from tinyswap.fixedpoint import rounding_divide_by_pot\n", 1, "d-parsing"),
    ("tinyswap.schema", "def f():\n    import tinyswap.kernels.add\n", 2, "d-parsing"),
    ("tinyswap.firmware_sim.training", "from tinyswap.export.tflite_builder import X\n", 1, "e-simulator"),
    ("tinyswap.firmware_sim.personalise", "def f():\n    from ..export import compiler\n", 2, "e-simulator"),
    ("tinyswap.firmware_sim.device", "from tinyswap.fleet.shard import Shard\n", 1, "f-fleet-above-device"),
    ("tinyswap.swap", "def f():\n    import tinyswap.fleet.run\n", 2, "a-runtime"),
    ("tinyswap.cli", "import os\nfrom tinyswap.fleet.command import run\n", 2, "f-fleet-command-line"),
    ("tinyswap.fleet.engine", "def f():\n    import ray\n", 2, "f-ray"),
    ("tinyswap.fleet.ray_engine", "import ray\n", 1, "f-ray-lazy"),
    # Type-only imports still tie the runtime to the compiler's types: refused where no lazy import is allowed.
    ("tinyswap.swap", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tinyswap.export.pack import X\n",
     3, "a-runtime"),
]
RULE_NAMES = {r.key: r.name for r in RULES}


@pytest.mark.parametrize("module,source,line,rule", BREACHES, ids=[f"{r}:{m}:{n}" for m, _, n, r in BREACHES])
def test_a_synthetic_breach_is_reported(module: str, source: str, line: int, rule: str) -> None:
    is_package = module == "tinyswap.kernels"
    shown = module.replace(".", "/") + ("/__init__.py" if is_package else ".py")
    found = violations({module: (shown, source, is_package)})
    assert any(v.startswith(f"{shown}:{line}: ") and v.endswith(RULE_NAMES[rule]) for v in found), found


def test_allowed_imports_are_not_reported() -> None:
    allowed = {
        "tinyswap.cli": ("tinyswap/cli.py", "import numpy\nfrom tinyswap.errors import TinySwapError\n"
                         "def cmd():\n    from tinyswap.export.pack import pack\n    from tinyswap.commands import demo\n",
                         False),
        "tinyswap.commands.sim": ("tinyswap/commands/sim.py",
                                  "def build():\n    from tinyswap.firmware_sim.scenario import run\n"
                                  "if TYPE_CHECKING:\n    from tinyswap.export.build import BuiltBundle\n"
                                  "else:\n    import json\n", False),
        "tinyswap.export.spec": ("tinyswap/export/spec.py", "from tinyswap.files import read_json\n", False),
        "tinyswap.kernels.add": ("tinyswap/kernels/add.py", "from tinyswap import fixedpoint\n"
                                 "from tinyswap.errors import KernelError\nfrom .base import Kernel\n", False),
        "tinyswap.reader": ("tinyswap/reader.py", "from flatbuffers.table import Table\n"
                            "from tinyswap.errors import ModelError\n", False),
        # the simulator packs with the runtime's slot maths (rule e refuses `tinyswap.export.pack`)
        "tinyswap.firmware_sim.device": ("tinyswap/firmware_sim/device.py",
                                         "from tinyswap.slot_quant import quantize_lora\n", False),
    }
    assert violations(allowed) == []


def test_relative_imports_resolve_to_absolute_names() -> None:
    sites = import_sites("from . import base\nfrom ..schema import TensorType\nfrom .. import swap\n",
                         "tinyswap.kernels.add")
    assert {s.target for s in sites} >= {"tinyswap.kernels", "tinyswap.kernels.base", "tinyswap.schema",
                                         "tinyswap.schema.TensorType", "tinyswap.swap"}
    package_sites = import_sites("from .base import Kernel\n", "tinyswap.kernels", is_package=True)
    assert package_sites[0].target == "tinyswap.kernels.base"


def test_the_dynamic_check_sees_an_import_made_at_module_level(tmp_path: Path) -> None:
    pkg = tmp_path / "fakeswap"
    (pkg / "sim").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sim" / "__init__.py").write_text("")
    (pkg / "runtime.py").write_text("import fakeswap.sim\n")
    (pkg / "clean.py").write_text("def later():\n    import fakeswap.sim\n")
    found = loaded_after_importing(["fakeswap.clean", "fakeswap.runtime"], ("fakeswap.sim",), str(tmp_path))
    assert found == ["fakeswap.runtime -> fakeswap.sim"]
