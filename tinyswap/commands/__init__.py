"""Implementations of the larger `tinyswap` commands (demo, sim helpers, the digits example).

These belong to the command-line entry: they may use `export` and `firmware_sim`, but only by
imports inside their functions, so that importing `tinyswap` never imports either
(docs/architecture.md, "Layers" dependency rules; tests/tinyswap/test_dependencies.py checks it).
"""
