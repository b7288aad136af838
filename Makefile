# Two commands on a fresh machine:  make demo   and   make test
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export MLRSNET_DATA_DIR ?= $(abspath ../shared/data)
# Busy-waiting OpenMP threads make 2-thread CPU training several times slower on a loaded
# 2-core machine; passive waiting costs nothing measurable when it is idle.
export OMP_WAIT_POLICY ?= PASSIVE
# PyTorch's CPU buffers on huge pages: no float changes, far fewer page faults (the test
# process and every command; mlrsnet/harness/process_env.py).
export THP_MEM_ALLOC_ENABLE ?= 1
PROFILE ?= mini
# Execution options for the search targets, e.g. EXEC_OPTS=--channels-last (faster on CPU,
# other floats: README, "On GPUs"); empty by default.
EXEC_OPTS ?=
# reproduce-all and figures default to the CPU figure profile unless PROFILE is given
REPRO_PROFILE := $(if $(filter command line environment,$(origin PROFILE)),$(PROFILE),cpu)
OFFICIAL_CHECKPOINTS := $(abspath ../shared/reference/official-mlrsnet)

.PHONY: install test test-slow demo lint reproduce-table1 reproduce-transfer reproduce-all perf clean figures

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

# Transferred MLR-SNet (the authors' checkpoints in ../shared and the shipped ours-mini set)
# against hand-designed schedules, then the figure and its caption (what to read in it).
demo: export MLRSNET_CHECKPOINTS ?= $(OFFICIAL_CHECKPOINTS)
demo: install
	$(BIN)/mlrsnet-bench run benchmarks/demo.toml
	$(BIN)/mlrsnet-bench report demo --experiment demo
	@echo; cat reports/demo-resnet18-cifar10.caption.txt

lint: install
	$(BIN)/ruff check mlrsnet baselines tests benchmarks

perf: install
	$(BIN)/python benchmarks/perf/loop_overhead.py

clean:
	rm -rf results/*/ reports/*.png

# Supplement Table 1 (docs/tuning.md): MultiStep tuned by BayesOpt and BOHB; resumable.
reproduce-table1: install
	$(BIN)/mlrsnet-bench tune benchmarks/table1.toml --profile $(PROFILE) $(EXEC_OPTS)
	$(BIN)/mlrsnet-bench report table1 --experiment table1

# Supplement Fig. 5: CIFAR-10-tuned MultiStep (four searchers) applied unchanged elsewhere.
reproduce-transfer: export MLRSNET_CHECKPOINTS ?= $(OFFICIAL_CHECKPOINTS)
reproduce-transfer: install
	$(BIN)/mlrsnet-bench tune benchmarks/transfer.toml --profile $(PROFILE)
	$(BIN)/mlrsnet-bench report transfer --experiment transfer

# The supplement's experiments in dependency order (benchmarks/reproduce_all.toml): searches
# at the search profile, the figures' runs at the figure profile (PROFILE=cpu: mini, cpu),
# resumable (finished runs are never redone), then the report under reports/<PROFILE>/.
# The results themselves live beside it, in reports/<PROFILE>/results.
reproduce-all: export MLRSNET_CHECKPOINTS ?= $(OFFICIAL_CHECKPOINTS)
reproduce-all: install
	$(BIN)/mlrsnet-bench reproduce --profile $(REPRO_PROFILE) --results reports/$(REPRO_PROFILE)/results

# Re-render the reproduction's report from its Parquet results alone (never trains), or
# with EXPERIMENT=E every figure and table of one experiment under results/.
figures: install
ifdef EXPERIMENT
	$(BIN)/mlrsnet-bench report all --experiment $(EXPERIMENT) --out reports/$(PROFILE)
else
	$(BIN)/mlrsnet-bench reproduce --profile $(REPRO_PROFILE) --render-only --results reports/$(REPRO_PROFILE)/results
endif
