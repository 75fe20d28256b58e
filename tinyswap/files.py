"""Reading the files a user hands to tinyswap, with one clear error per wrong file.

Every command reads its inputs through these helpers, so a missing file, a directory, an empty
file, binary bytes where JSON is expected or a malformed array all become one
`InputFileError` naming the file and the problem, instead of an `OSError`, a
`UnicodeDecodeError` or a NumPy `ValueError` escaping as a traceback. The runtime needs only
the standard library and NumPy here; parsing what the bytes mean stays with the caller.
"""

from __future__ import annotations

import errno
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Union

import numpy as np

from tinyswap.errors import InputFileError

PathLike = Union[str, "os.PathLike[str]"]

_NPY_MAGIC = b"\x93NUMPY"  # numpy.lib.format.MAGIC_PREFIX
_NPZ_MAGIC = b"PK\x03\x04"  # a zip archive: what np.savez writes

# OSError numbers that deserve words of their own; everything else uses the system's text.
_OS_PROBLEMS = {
    errno.ENOENT: "no such file",
    errno.EISDIR: "is a directory, expected a file",
    errno.ENOTDIR: "a parent of it is not a directory",
    errno.EACCES: "permission denied",
}


def _os_problem(exc: OSError) -> str:
    return _OS_PROBLEMS.get(exc.errno or 0, exc.strerror or str(exc))


def read_bytes(path: PathLike, what: str = "file") -> bytes:
    """The whole file as bytes; `what` names it in the error ("model", "signing key", ...)."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputFileError(path, _os_problem(exc), what) from exc


def read_text(path: PathLike, what: str = "file") -> str:
    """The whole file as UTF-8 text; binary bytes are refused with the offset of the first bad byte."""
    data = read_bytes(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(path, f"not a text file (byte 0x{data[exc.start]:02x} at offset {exc.start} "
                                   f"is not UTF-8)", what) from exc


def read_json(path: PathLike, what: str = "JSON file") -> Any:
    """The file parsed as JSON; empty, binary or malformed files are refused with line and column."""
    text = read_text(path, what)
    if not text.strip():
        raise InputFileError(path, "the file is empty, expected JSON", what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                             what) from exc


def read_npy(path: PathLike, what: str = "array file") -> np.ndarray:
    """One NumPy `.npy` array (never pickled objects: a data file must not run code)."""
    data = read_bytes(path, what)
    if not data:
        raise InputFileError(path, "the file is empty, expected a .npy array", what)
    # Check the magic first: without it np.load falls back to pickle and, refusing that,
    # reports "pickled (object) data", which misleads about a file that is just not an array.
    if data.startswith(_NPZ_MAGIC):
        raise InputFileError(path, "is a .npz archive, expected a single .npy array", what)
    if not data.startswith(_NPY_MAGIC):
        raise InputFileError(path, f"not a .npy array (the file does not start with {_NPY_MAGIC!r})", what)
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise InputFileError(path, f"not a valid .npy array: {' '.join(str(exc).split())}", what) from exc


def read_npz(path: PathLike, what: str = "array archive") -> dict[str, np.ndarray]:
    """Every array of a NumPy `.npz` archive, loaded (never pickled objects)."""
    data = read_bytes(path, what)
    if not data:
        raise InputFileError(path, "the file is empty, expected a .npz archive", what)
    if data.startswith(_NPY_MAGIC):
        raise InputFileError(path, "is a single .npy array, expected a .npz archive", what)
    if not data.startswith(_NPZ_MAGIC):
        raise InputFileError(path, "not a .npz archive (the file is not a zip archive)", what)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise InputFileError(path, f"not a valid .npz archive: {' '.join(str(exc).split())}", what) from exc


__all__ = ["read_bytes", "read_json", "read_npy", "read_npz", "read_text"]
