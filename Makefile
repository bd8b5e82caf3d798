# hwflow: QKeras transformers/conformers -> hls4ml firmware -> C simulation -> synthesis -> reports.
# `make demo` sets everything up and runs the main job end to end; `make test` runs the default tests.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
HW     := $(BIN)/hwflow
MODEL  ?= jet_transformer
STAMP  := $(VENV)/.installed
RTLVENV := .venv-rtl
RTLSTAMP := $(RTLVENV)/.installed
export PYTHONHASHSEED := 0
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: help setup deps demo data train firmware csim synth report compare rtl-env rtl rtl-full rtl-synth bench sweep explore lint test test-slow test-rtl test-all clean distclean

help:
	@echo "make demo                 set up .venv and run data -> train -> firmware -> csim -> report for MODEL=$(MODEL)"
	@echo "make lint                 ruff format --check, ruff check and clang-format on the C++ headers"
	@echo "make test                 lint, then the default tests (target: <= 10 min on an idle 2-core machine); test-slow / test-rtl / test-all for the rest"
	@echo "make data|train|firmware|csim|synth|rtl MODEL=<card in models/>   one stage"
	@echo "make rtl-env / rtl / rtl-synth / rtl-full MODEL=..   open RTL route (da4ml, Verilator, Yosys) in .venv-rtl"
	@echo "make report               collect reports/summary.{json,md} over all models"
	@echo "make sweep MODEL=.. REUSE='1 2 4'   firmware + csim (+ synth if tools exist) per reuse factor"
	@echo "make bench                benchmarks into reports/bench/"
	@echo "make explore MODEL=.. [TRIALS=N]   design-space exploration on Dask: Pareto front + cards (reports/m/explore/)"

# --- environment ---------------------------------------------------------------------------
$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found: install Python 3.11 (or run make PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip==24.3.1"
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

setup: $(STAMP) deps

# Debian tools the data generators and the open RTL flow use; installed when missing (root), else a clear message.
deps:
	@need=""; for t in espeak-ng:espeak-ng g++:g++; do cmd=$${t%%:*}; pkg=$${t##*:}; command -v $$cmd >/dev/null || need="$$need $$pkg"; done; \
	if [ -n "$$need" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$need"; (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null) \
	    || { echo "error: could not install$$need: run 'apt-get install$$need' as root"; exit 1; }; \
	  else echo "error: missing$$need: install with 'sudo apt-get install$$need'"; exit 1; fi; \
	fi

# --- stages ---------------------------------------------------------------------------------
data: setup
	$(HW) data --model $(MODEL)

train: setup
	$(HW) train $(MODEL)

firmware: setup
	$(HW) firmware $(MODEL)

csim: setup
	$(HW) csim $(MODEL)

synth: setup
	$(HW) synth $(MODEL) $(SYNTH_ARGS)

report: setup
	$(HW) report $(if $(MODELS),--models $(MODELS))

compare: setup
	@test -n "$(A)" -a -n "$(B)" || { echo "usage: make compare A=reports/<run1> B=reports/<run2>"; exit 1; }
	$(HW) report compare $(A) $(B)

rtl-env: $(RTLSTAMP)
$(RTLSTAMP): requirements-rtl.txt hwflow/rtl/setup_env.sh hwflow/rtl/setup_env.py
	bash hwflow/rtl/setup_env.sh $(RTLVENV)
	touch $@

rtl: setup rtl-env
	$(HW) rtl $(MODEL)

# the multi-hour route for large designs: Verilator/Icarus simulation and Yosys even above the size limits
rtl-full: setup rtl-env
	$(HW) rtl $(MODEL) --simulate --yosys

# the heavy step of the open RTL route on its own: Yosys synthesis whatever da4ml's size estimate (tens of minutes)
rtl-synth: setup rtl-env
	$(HW) rtl $(MODEL) --yosys

bench: setup
	$(HW) bench $(MODEL)

REUSE ?= 1 2 4
sweep: setup
	$(HW) sweep $(MODEL) --reuse $(REUSE)

# design-space exploration (hwflow/explore.py): space models/$(MODEL).explore.yaml, trials on a Dask LocalCluster
explore: setup rtl-env
	$(HW) explore $(MODEL) $(if $(TRIALS),--trials $(TRIALS))

demo: setup
	$(HW) data --model $(MODEL)
	$(HW) train $(MODEL)
	$(HW) firmware $(MODEL)
	$(HW) csim $(MODEL)
	$(HW) report
	@echo "demo done: see reports/$(MODEL)/csim.md and reports/summary.md"

# --- tests ----------------------------------------------------------------------------------
PYTEST := $(BIN)/python -m pytest
# style never waits for review: `make test` (and so .ci/run) fails on a lint or format error
lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/clang-format --dry-run -Werror hwflow/hls/nnet_utils/*.h

test: setup rtl-env lint
	$(PYTEST) -q

test-slow: setup
	$(PYTEST) -q -m slow

test-rtl: setup rtl-env
	$(PYTEST) -q -m rtl

test-all: setup rtl-env
	$(PYTEST) -q -m ""

clean:
	rm -rf firmware reports/*/ reports/summary.* .pytest_cache

distclean: clean
	rm -rf $(VENV) $(RTLVENV) data models/*/
