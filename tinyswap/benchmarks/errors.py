"""What a benchmark refuses (a missing model directory, ...), under `TinySwapError` so that
`tinyswap bench` reports it like every other refusal."""

from __future__ import annotations

from tinyswap.errors import TinySwapError


class BenchmarkError(TinySwapError):
    """A benchmark cannot run with what it was given."""


__all__ = ["BenchmarkError"]
