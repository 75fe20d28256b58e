"""The swap tests' shared fixtures (the example bundle and three packages), from swap_cases."""

from tests.tinyswap.swap.swap_cases import bundle, packages  # noqa: F401 (pytest fixtures)
