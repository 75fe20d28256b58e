"""docs/architecture.md, "Layers": `tinyswap` imports neither `export` nor `firmware_sim` (the command-line
entry imports them lazily, inside functions)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import tinyswap


def test_importing_any_tinyswap_module_imports_neither_export_nor_firmware_sim() -> None:
    modules = sorted(m.name for m in pkgutil.walk_packages(tinyswap.__path__, "tinyswap."))
    assert "tinyswap.swap" in modules and "tinyswap.cli" in modules and "tinyswap.commands.digits" in modules
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('export', 'firmware_sim'))\n"
            "print(','.join(bad))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"imported at module level: {done.stdout.strip()}"
