#!/usr/bin/env bash
# Set up, then run the test suite (bounded CI sample). Extra arguments go to pytest.
# Full sweeps: TINYSWAP_FULL=1 bash scripts/test.sh -m ""
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -n 2 -q "$@"
