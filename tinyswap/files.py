"""Reading the files a user hands to tinyswap, with one clear error per wrong file.

Every command reads its inputs through these helpers, so a missing file, a directory, an empty
file, binary bytes where JSON is expected or a malformed array all become one
`InputFileError` naming the file and the problem, instead of an `OSError`, a
`UnicodeDecodeError` or a NumPy `ValueError` escaping as a traceback. The runtime needs only
the standard library and NumPy here; parsing what the bytes mean stays with the caller.

JSON from outside (packages, slot maps, scenarios, adapter configs, plans) goes through
`parse_json_bounded`, which refuses nesting deeper than `MAX_JSON_DEPTH` before parsing
(Python's decoder would raise `RecursionError`) and integers longer than
`MAX_JSON_INT_DIGITS` digits (a huge digit string costs quadratic time, or a `ValueError`),
each as an `InputFileError`, without touching process-wide settings.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import stat
import zipfile
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


# Far beyond any file tinyswap reads (a slot map nests 4 deep, offsets have at most 20 digits).
MAX_JSON_DEPTH = 64
MAX_JSON_INT_DIGITS = 64

# A JSON string token (with escapes): brackets inside one do not nest.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# Every byte but the ones that decide nesting (brackets, quotes, backslashes): deleted first, so
# the scans below run over a few hundred bytes instead of the whole text.
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"\\')
# +1 for an opening bracket, -1 for a closing one, 0 for every other byte: one table lookup per
# byte (np.isin sorts its inputs on every call, which dominated a package's metadata check).
_BRACKET_STEP = np.zeros(256, dtype=np.int64)
_BRACKET_STEP[list(b"[{")] = 1
_BRACKET_STEP[list(b"]}")] = -1
# Digits to b"0", every other byte to b" ": an integer token of n digits becomes a run of n zeros,
# so one substring search (C speed) tells whether any could be over the digit limit.
_DIGIT_RUNS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))


class _IntTooLong(Exception):
    def __init__(self, digits: int) -> None:
        super().__init__(digits)
        self.digits = digits


def json_depth(data: bytes) -> int:
    """The deepest bracket nesting of JSON `data`, brackets inside strings not counted.

    Linear: the bytes that do not decide nesting are deleted first (`bytes.translate`, C speed);
    without backslashes, and with every string closed, the quotes pair up in order, so what lies
    outside strings is every other piece between quotes; otherwise the escape-aware regex
    strips the strings."""
    structure = data.translate(None, _NOT_STRUCTURE)
    pieces = structure.split(b'"')
    if b"\\" not in structure and len(pieces) % 2:
        outside = b"".join(pieces[0::2])
    else:  # escapes need the characters they escape: the regex on the whole text
        outside = _JSON_STRING.sub(b'""', bytes(data))
    codes = np.frombuffer(outside, dtype=np.uint8)
    return max(int(np.cumsum(_BRACKET_STEP[codes]).max()), 0) if codes.size else 0


def _longest_digit_run_over(raw: bytes, limit: int) -> bool:
    """Whether `raw` has more than `limit` consecutive ASCII digits anywhere (inside strings
    too): False proves that no integer token is over the limit."""
    return b"0" * (limit + 1) in raw.translate(_DIGIT_RUNS)


def parse_json_bounded(data: Union[str, bytes, bytearray, memoryview], what: str = "JSON", *,
                       path: PathLike | None = None, max_depth: int = MAX_JSON_DEPTH,
                       max_int_digits: int = MAX_JSON_INT_DIGITS, **json_options: Any) -> Any:
    """`data` (text or UTF-8 bytes) parsed as JSON, refusing what would crash or stall the parser.

    Nesting deeper than `max_depth` and integers of more than `max_int_digits` digits are
    refused before they are built, like malformed JSON, as one `InputFileError` naming `what`
    (and `path`, when the JSON came from a file) and the problem. `json_options`
    (`object_pairs_hook`, `parse_constant`, ...) go to `json.loads`; `parse_int` is ours.
    """
    if "parse_int" in json_options:
        raise TypeError("parse_json_bounded parses integers itself (to bound their digits)")
    where = "(in memory)" if path is None else path
    if isinstance(data, str):
        text = data
        raw = data.encode("utf-8", errors="surrogatepass")
    else:
        raw = bytes(data)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputFileError(where, f"not a text file (byte 0x{raw[exc.start]:02x} at offset {exc.start} "
                                        f"is not UTF-8)", what) from exc
    # The nesting is at most the number of opening brackets: counting them settles most texts.
    if raw.count(b"[") + raw.count(b"{") > max_depth:
        depth = json_depth(raw)
        if depth > max_depth:
            raise InputFileError(where, f"JSON nested {depth} levels deep, over the limit of {max_depth}", what)

    def parse_int(token: str) -> int:
        digits = len(token) - (token[0] == "-")
        if digits > max_int_digits:
            raise _IntTooLong(digits)
        return int(token)

    # No digit run long enough for an integer over the limit: the decoder's own integer parsing
    # is exact and saves a Python call per integer (most of a package's metadata parse).
    options = {**json_options, "parse_int": parse_int} if _longest_digit_run_over(raw, max_int_digits) else json_options
    try:
        return json.loads(text, **options)
    except _IntTooLong as exc:
        raise InputFileError(where, f"JSON integer of {exc.digits} digits, over the limit of {max_int_digits}",
                             what) from None
    except json.JSONDecodeError as exc:
        raise InputFileError(where, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                             what) from exc
    except RecursionError as exc:  # only if a caller raised max_depth past the interpreter's stack
        raise InputFileError(where, "JSON nested too deeply for the parser", what) from exc


# The largest file any reader takes: a model, a package (64 MiB payload at most) or a dataset.
# Checked with fstat before a byte is read, so a huge file, a device node such as /dev/zero or
# a FIFO that never ends costs nothing; callers that expect small files pass a smaller bound.
MAX_FILE_BYTES = 256 << 20
MAX_KEY_FILE_BYTES = 64 << 10  # a PEM key is a few hundred bytes
MAX_JSON_FILE_BYTES = 16 << 20  # slot maps, plans, adapter configs: kilobytes in practice


def read_bytes(path: PathLike, what: str = "file", *, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The whole file as bytes; `what` names it in the error ("model", "signing key", ...).

    Only a regular file of at most `max_bytes` bytes is read: a directory, a device, a FIFO or
    a socket is refused after `fstat` on the opened descriptor (so the check applies to the file
    that is read, not to a path swapped in between), and so is a larger file, before reading.
    O_NONBLOCK keeps the open of a FIFO from waiting for a writer."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise InputFileError(path, _os_problem(exc), what) from exc
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InputFileError(path, _OS_PROBLEMS[errno.EISDIR], what)
        if not stat.S_ISREG(info.st_mode):
            raise InputFileError(path, "not a regular file (a device, FIFO or socket)", what)
        if info.st_size > max_bytes:
            raise InputFileError(path, f"{info.st_size} bytes, over the {max_bytes}-byte limit for a {what}", what)
        chunks, total = [], 0
        while total <= max_bytes:
            # Ask for what fstat promised (plus one byte to see growth), never the whole bound:
            # os.read allocates its buffer up front.
            chunk = os.read(fd, min(max_bytes + 1 - total, max(info.st_size + 1 - total, 1 << 16)))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise InputFileError(path, _os_problem(exc), what) from exc
    finally:
        os.close(fd)
    if total > max_bytes:  # the file grew after fstat
        raise InputFileError(path, f"more than the {max_bytes}-byte limit for a {what}", what)
    return b"".join(chunks)


def read_text(path: PathLike, what: str = "file", *, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The whole file as UTF-8 text; binary bytes are refused with the offset of the first bad byte."""
    data = read_bytes(path, what, max_bytes=max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(path, f"not a text file (byte 0x{data[exc.start]:02x} at offset {exc.start} "
                                   f"is not UTF-8)", what) from exc


def read_json(path: PathLike, what: str = "JSON file", *, max_bytes: int = MAX_JSON_FILE_BYTES) -> Any:
    """The file parsed as JSON; empty, binary or malformed files are refused with line and column."""
    text = read_text(path, what, max_bytes=max_bytes)
    if not text.strip():
        raise InputFileError(path, "the file is empty, expected JSON", what)
    return parse_json_bounded(text, what, path=path)


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


__all__ = ["MAX_FILE_BYTES", "MAX_JSON_DEPTH", "MAX_JSON_FILE_BYTES", "MAX_JSON_INT_DIGITS", "MAX_KEY_FILE_BYTES", "json_depth", "parse_json_bounded", "read_bytes",
           "read_json", "read_npy", "read_npz", "read_text"]
