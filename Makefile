# Two commands on a fresh machine:  make demo   and   make test
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export MLRSNET_DATA_DIR ?= $(abspath ../shared/data)
# Busy-waiting OpenMP threads make 2-thread CPU training several times slower on a loaded
# 2-core machine; passive waiting costs nothing measurable when it is idle.
export OMP_WAIT_POLICY ?= PASSIVE
PROFILE ?= mini
EXPERIMENT ?= demo

.PHONY: install test test-slow demo lint reproduce-table1 reproduce-transfer perf clean figures

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install --quiet -e ".[bench,dev]"
	@touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q -m "not slow"

# The checks marked slow.  pytest's exit code 5 (no test selected) fails the target with a
# message: a test-slow that ran nothing has checked nothing.
test-slow: install
	@$(BIN)/python -m pytest -q -m slow; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-slow: no test is marked slow (pytest exit code 5)" >&2; exit 1; fi; \
	exit $$rc

demo: install
	$(BIN)/mlrsnet-bench run benchmarks/demo.toml
	$(BIN)/mlrsnet-bench report demo --experiment demo

lint: install
	$(BIN)/ruff check mlrsnet baselines tests benchmarks

perf: install
	$(BIN)/python benchmarks/perf/loop_overhead.py

clean:
	rm -rf results/*/ reports/*.png

# Supplement Table 1 (docs/tuning.md): MultiStep tuned by BayesOpt and BOHB; resumable.
reproduce-table1: install
	$(BIN)/mlrsnet-bench tune benchmarks/table1.toml --profile $(PROFILE)
	$(BIN)/mlrsnet-bench report table1 --experiment table1

# Supplement Fig. 5: CIFAR-10-tuned MultiStep (four searchers) applied unchanged elsewhere.
reproduce-transfer: export MLRSNET_CHECKPOINTS ?= $(abspath ../shared/reference/official-mlrsnet)
reproduce-transfer: install
	$(BIN)/mlrsnet-bench tune benchmarks/transfer.toml --profile $(PROFILE)
	$(BIN)/mlrsnet-bench report transfer --experiment transfer

# Every figure and table of one experiment (curves, LR schedules, performance profile,
# summary) and an index.md / index.html listing them, from the Parquet results alone.
figures: install
	$(BIN)/mlrsnet-bench report all --experiment $(EXPERIMENT) --out reports/$(PROFILE)
