"""The BLAS thread cap an interpreter holds while it invokes (`num_threads`), through threadpoolctl.

NumPy's BLAS (OpenBLAS) starts one thread per core for any matrix product it deems large enough.
On a busy machine those threads wait for cores the other work holds: measured on this 2-core
machine under load, a batch-64 pointwise convolution took 13.8 ms with OpenBLAS's two threads
and 1.9 ms with one. TFLite Micro runs on one thread; so does an interpreter with
`num_threads=1` (the default) while it invokes, whatever the process set before, which it
gets back afterwards.

threadpoolctl's `limit()` context manager costs tens of microseconds per use (it rescans the
libraries), more than a small model's whole invoke; the library controllers it found once are
asked and set directly instead (about a microsecond each). Even so, capping and restoring
costs a few microseconds per invoke, a tenth of a small model's whole invoke, for nothing when
no matrix product of the plan is large enough for OpenBLAS to start a thread: its interface
(`interface/gemm.c`, `interface/gemv.c`, with the default GEMM_MULTITHREAD_THRESHOLD of 4) runs
single-threaded up to M * N * K = 4 * 65536 (gemm) and below M * N = 4 * 2304 (gemv: a product
with one row or one column, NumPy's matrix-vector case). The interpreter therefore caps only
plans with a product `blas_may_thread` says OpenBLAS could spread over threads.
"""

from __future__ import annotations

import threading
from typing import Any

# OpenBLAS's single-thread limits (see the module docstring).
GEMM_SINGLE_THREAD_WORK = 4 * 65536
GEMV_SINGLE_THREAD_SIZE = 4 * 2304


def blas_may_thread(rows: int, depth: int, columns: int) -> bool:
    """Whether OpenBLAS may start threads for a [rows, depth] x [depth, columns] product."""
    if rows == 1 or columns == 1:  # matrix-vector: the matrix is depth x the other side
        return depth * max(rows, columns) >= GEMV_SINGLE_THREAD_SIZE
    return rows * depth * columns > GEMM_SINGLE_THREAD_WORK

_LOCK = threading.Lock()
_BLAS: list[Any] | None = None


def _blas_libraries() -> list[Any]:
    """threadpoolctl's controllers of the BLAS libraries loaded in this process (found once)."""
    global _BLAS
    with _LOCK:
        if _BLAS is None:
            import numpy  # noqa: F401  # loads NumPy's BLAS before the scan
            from threadpoolctl import ThreadpoolController

            _BLAS = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        return _BLAS


class BlasThreadCap:
    """`cap()` lowers every BLAS library's thread count to `threads` (never raises it) and
    returns what to restore; `restore()` puts those counts back."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._libraries = _blas_libraries()

    def cap(self) -> list[tuple[Any, int]]:
        changed = []
        for library in self._libraries:
            current = library.get_num_threads()
            if current is not None and current > self.threads:
                library.set_num_threads(self.threads)
                changed.append((library, current))
        return changed

    @staticmethod
    def restore(changed: list[tuple[Any, int]]) -> None:
        for library, threads in changed:
            library.set_num_threads(threads)


__all__ = ["BlasThreadCap", "blas_may_thread"]
