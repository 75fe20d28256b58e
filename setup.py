"""Build step that pyproject.toml cannot say: ship the repository's `models/` folder (example
models, the digits data, scenarios, TFLite Micro example models) inside the wheel as
`tinyswap/_models`, so an installed `tinyswap demo` and `tinyswap bench` need no checkout.
Everything else about the package is in pyproject.toml."""

from pathlib import Path
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

# Data the product reads at run time; training scripts and caches stay in the repository.
_DATA_SUFFIXES = {".json", ".npz", ".npy", ".tflite", ".md", ".safetensors"}


class BuildPyWithModels(build_py):
    def run(self) -> None:
        super().run()
        source = Path(__file__).resolve().parent / "models"
        target = Path(self.build_lib) / "tinyswap" / "_models"
        if target.exists():
            shutil.rmtree(target)
        for path in sorted(source.rglob("*")):
            if path.is_file() and path.suffix in _DATA_SUFFIXES and "__pycache__" not in path.parts:
                dest = target / path.relative_to(source)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)


setup(cmdclass={"build_py": BuildPyWithModels})
