"""`tinyswap.files`: every wrong file becomes one `InputFileError` naming the file and the problem."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from tinyswap.errors import InputFileError, TinySwapError
from tinyswap.files import read_bytes, read_json, read_npy, read_npz, read_text


def test_good_files_are_read(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"x": [1, 2]}')
    np.save(tmp_path / "a.npy", np.arange(6, dtype=np.int8).reshape(2, 3))
    assert read_json(tmp_path / "a.json") == {"x": [1, 2]}
    assert read_text(tmp_path / "a.json") == '{"x": [1, 2]}'
    assert read_bytes(tmp_path / "a.json") == b'{"x": [1, 2]}'
    array = read_npy(tmp_path / "a.npy")
    assert array.dtype == np.int8 and array.tolist() == [[0, 1, 2], [3, 4, 5]]
    np.savez(tmp_path / "w.npz", **{"fc/kernel": np.ones((2, 2), np.float32), "fc/bias": np.zeros(2, np.float32)})
    arrays = read_npz(tmp_path / "w.npz")
    assert sorted(arrays) == ["fc/bias", "fc/kernel"] and arrays["fc/kernel"].sum() == 4


@pytest.mark.parametrize("content,reader,problem", [
    (None, read_bytes, "no such file"),
    ("dir", read_bytes, "is a directory, expected a file"),
    (b"\x7fELF\xff\x00", read_text, "not a text file (byte 0xff at offset 4 is not UTF-8)"),
    (b"", read_json, "the file is empty, expected JSON"),
    (b"  \n", read_json, "the file is empty, expected JSON"),
    (b'{"a": 1,}', read_json, "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 9"),
    (b"\x89PNG\r\n\x1a\n", read_json, "not a text file (byte 0x89 at offset 0"),
    (b"", read_npy, "the file is empty, expected a .npy array"),
    (b"not an array", read_npy, "not a .npy array (the file does not start with"),
    (b"PK\x03\x04rest", read_npy, "is a .npz archive, expected a single .npy array"),
    (b"\x93NUMPY\x01\x00", read_npy, "not a valid .npy array"),
    (b"", read_npz, "the file is empty, expected a .npz archive"),
    (b"\x93NUMPY\x01\x00", read_npz, "is a single .npy array, expected a .npz archive"),
    (b"{}", read_npz, "not a .npz archive (the file is not a zip archive)"),
    (b"PK\x03\x04truncated", read_npz, "not a valid .npz archive"),
])
def test_a_wrong_file_is_one_typed_error_naming_it(tmp_path: Path, content: bytes | str | None, reader,
                                                   problem: str) -> None:
    path = tmp_path / "input"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)  # type: ignore[arg-type]
    with pytest.raises(InputFileError) as caught:
        reader(path, "spec")
    err = caught.value
    assert isinstance(err, TinySwapError)
    assert err.path == str(path) and err.what == "spec"
    assert str(err).startswith(f"spec {path}: ") and problem in str(err), str(err)
    assert "\n" not in str(err)


def test_a_pickled_array_is_refused_without_running_it(tmp_path: Path) -> None:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "obj.npy").write_bytes(buf.getvalue())
    with pytest.raises(InputFileError, match="not a valid .npy array"):
        read_npy(tmp_path / "obj.npy")


def test_parse_json_bounded_reads_text_and_bytes() -> None:
    from tinyswap.files import parse_json_bounded

    text = '{"a": "[[{\\"", "b": [[1, -20, 2.5]], "c": "\u00e9"}'
    expected = {"a": '[[{"', "b": [[1, -20, 2.5]], "c": "\u00e9"}
    assert parse_json_bounded(text) == expected
    assert parse_json_bounded(text.encode()) == expected
    assert parse_json_bounded(bytearray(text.encode()), max_depth=3) == expected  # brackets in strings do not count


@pytest.mark.parametrize("data,limits,problem", [
    ("[[[1]]]", {"max_depth": 2}, "JSON nested 3 levels deep, over the limit of 2"),
    ('{"a": {"b": {}}}', {"max_depth": 2}, "JSON nested 3 levels deep, over the limit of 2"),
    ("[123456]", {"max_int_digits": 5}, "JSON integer of 6 digits, over the limit of 5"),
    ("[-123456]", {"max_int_digits": 5}, "JSON integer of 6 digits, over the limit of 5"),
    ("[" * 5000 + "]" * 5000, {}, "JSON nested 5000 levels deep, over the limit of 64"),
    ("9" * 5000, {}, "JSON integer of 5000 digits, over the limit of 64"),
    ('{"a": }', {}, "not valid JSON: Expecting value at line 1 column 7"),
    (b"\xff{}", {}, "not a text file (byte 0xff at offset 0 is not UTF-8)"),
])
def test_parse_json_bounded_refuses_with_one_typed_error(data, limits, problem) -> None:
    from tinyswap.files import parse_json_bounded

    with pytest.raises(InputFileError) as info:
        parse_json_bounded(data, "scenario", path="s.json", **limits)
    assert info.value.problem == problem and info.value.what == "scenario" and info.value.path == "s.json"
    assert str(info.value) == f"scenario s.json: {problem}"
    # The float parser is untouched: long mantissas are not integers.
    assert parse_json_bounded("[" + "1" * 100 + ".5]")[0] > 1e99


def test_parse_json_bounded_passes_decoder_options() -> None:
    from tinyswap.files import parse_json_bounded

    assert parse_json_bounded('{"a": 1, "a": 2}', object_pairs_hook=list) == [("a", 1), ("a", 2)]
    with pytest.raises(TypeError, match="parses integers itself"):
        parse_json_bounded("1", parse_int=int)


def test_only_regular_files_within_the_bound_are_read(tmp_path: Path) -> None:
    """A device node, a FIFO or a file over the bound is refused from `fstat` alone: nothing is
    read, so /dev/zero or a pipe that never ends cannot exhaust memory or hang the reader."""
    import os

    special = [p for p in ("/dev/zero", "/dev/null", "/dev/urandom") if os.path.exists(p)]
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe")  # opening must not block waiting for a writer
        special.append(str(tmp_path / "pipe"))
    assert special, "no special file to try on this system"
    for path in special:
        for reader in (read_bytes, read_text, read_json, read_npy, read_npz):
            with pytest.raises(InputFileError, match="not a regular file"):
                reader(path, "spec")
    sparse = tmp_path / "sparse.bin"
    with open(sparse, "wb") as f:
        f.truncate(1 << 40)  # a terabyte on paper, no blocks on disk: the size alone refuses it
    with pytest.raises(InputFileError, match=f"{1 << 40} bytes, over the 268435456-byte limit for a model"):
        read_bytes(sparse, "model")
    small = tmp_path / "small.json"
    small.write_text('{"a": 1}')
    assert read_json(small, max_bytes=8) == {"a": 1}
    small.write_text('{"a": 12}')
    with pytest.raises(InputFileError, match="9 bytes, over the 8-byte limit for a plan"):
        read_json(small, "plan", max_bytes=8)


@pytest.mark.parametrize("data, depth", [
    (b'{"a": [1, {"b": []}]}', 4),
    (b'["[[[", "]]]", [[]]]', 3),  # brackets inside strings do not nest (no escapes: quotes pair in order)
    (b'["\\"[[[", [[]]]', 3),  # an escaped quote does not end the string (the escape-aware scan)
    (b'["a\\\\", [[]]]', 3),  # an escaped backslash does (the string ends after it)
    (b'[[ "unterminated [[[[', 6),  # an unterminated string's brackets count (the parser refuses it anyway)
    (b"]]][", 0),  # closing brackets first: no nesting
    (b"", 0),
])
def test_json_depth_counts_brackets_outside_strings(data: bytes, depth: int) -> None:
    from tinyswap.files import json_depth

    assert json_depth(data) == depth


def test_integers_are_bounded_whichever_way_the_text_is_scanned() -> None:
    """A long digit run inside a string only takes the slower, per-integer check; an integer at
    the limit parses, one digit over is refused, wherever it sits."""
    from tinyswap.files import parse_json_bounded

    assert parse_json_bounded('{"s": "' + "7" * 80 + '", "n": 12}') == {"s": "7" * 80, "n": 12}
    assert parse_json_bounded("[" + "9" * 64 + "]") == [int("9" * 64)]
    with pytest.raises(InputFileError, match="JSON integer of 65 digits"):
        parse_json_bounded('{"s": "' + "7" * 80 + '", "n": ' + "9" * 65 + "}")
