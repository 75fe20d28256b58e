"""OpenBLAS's single-thread limits as `blas_may_thread` states them (its `interface/gemm.c`
and `interface/gemv.c` with the default GEMM_MULTITHREAD_THRESHOLD of 4)."""

from tinyswap.threads import blas_may_thread


def test_matrix_products_thread_only_above_four_times_65536_multiply_adds() -> None:
    assert not blas_may_thread(64, 64, 64)  # 262,144: still one thread
    assert blas_may_thread(64, 64, 65)
    assert not blas_may_thread(64, 20, 32)


def test_matrix_vector_products_thread_from_four_times_2304_matrix_elements() -> None:
    assert not blas_may_thread(1, 95, 96)  # 9,120
    assert not blas_may_thread(1, 2303, 4)
    assert blas_may_thread(1, 2304, 4)  # 9,216
    assert blas_may_thread(4, 2304, 1)  # a column vector: the same
