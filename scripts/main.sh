#!/usr/bin/env bash
# The main job on its embedded default: set up, then run a bundled example model through the
# reference interpreter and check every row against the TFLite Micro interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/tinyswap run "${1:-models/keras/conv_stack.tflite}" --random 32 --compare --output out/run.npz
