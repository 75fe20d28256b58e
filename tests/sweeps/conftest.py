"""Fixtures the sweeps share with the unit tests they extend."""

from tests.tinyswap.test_package import bundle  # noqa: F401 (pytest fixture: the example bundle and its slot map)
