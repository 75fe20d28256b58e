"""Ethos-U bundles: the base compiled by Arm's Vela, the adapter slots left as plain buffers.

`segments` splits the graph, `vela` drives the compiler, `stitch` joins Vela's operators and the
CPU branches (and builds the reference twin), `bundle` writes it all. Vela is the `npu` extra.
"""
