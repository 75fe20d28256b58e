#!/usr/bin/env bash
# Create .venv (if missing) and install tinyswap with its test extras and the real PEFT library
# (torch CPU + peft: the PEFT interop test and the hot-swap benchmark compare against it). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.tinyswap-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test,peft]'
  touch "$stamp"
fi
