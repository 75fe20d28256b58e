#!/usr/bin/env bash
# The main job on its embedded default: set up, then `tinyswap demo`: export the digits CNN
# bundle, pack and sign its adapters, run a scripted day on a simulated mcu-qspi device (task
# switch, per-user routing, an A/B canary, mixed batches, an OTA update cut by power failures,
# a reverted trial, a rollback), stream words through a keyword spotter across an adapter
# update on a second device, measure accuracy per adapter against TFLite Micro and the
# switch latency per storage profile. Output: out/demo/ (report.json, trace.json, PNG plots).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/tinyswap demo --out "${1:-out/demo}"
