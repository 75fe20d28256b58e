"""Fleets: staged rollouts with health gates and federated adapters over many simulated devices.

A layer above the device: it imports `tinyswap.firmware_sim` (the device knows nothing of
fleets) and the runtime never imports it. Ray is imported only by `ray_engine.py`, when that
engine starts. The parts: `scenario.py` (the format), `assets.py` (bundle, keys, packages),
`measure.py` (tier A's outcome tables from the real device), `population.py` and `shard.py`
(tier A arrays and tier B devices per shard), `policy.py` (the health gate), `federated.py`,
`engine.py` / `ray_engine.py`, `run.py` (the driver), `outputs.py` (report, plots, trace).
"""
