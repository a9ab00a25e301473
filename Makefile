# The README's two commands: `make demo` (the smoke DAG on CPU) and `make test` (the test suite).
# Both create .venv if it is missing and install the pinned lock (envs/requirements.lock) first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= 2
SMK    := $(BIN)/snakemake --profile workflow/profiles/local --cores $(CORES)

# Jobs call `python -m repro.…`: the venv's python must come first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: small-cpu setup demo test test-fast test-slurm lint bench bench-packing gpu-check dag clean lock unlock report plan

setup: $(STAMP) sandbox-tools

# repro.sandbox confines generated programs with bubblewrap; without it, a clear error and the
# weaker layers (unshare namespaces + the in-process guard).
.PHONY: sandbox-tools
sandbox-tools:
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get install -y --no-install-recommends bubblewrap >/dev/null 2>&1 || \
	    { apt-get update >/dev/null 2>&1 && \
	      apt-get install -y --no-install-recommends bubblewrap >/dev/null 2>&1; }; }; } || \
	  echo "ERROR: bubblewrap (bwrap) is missing and could not be installed (needs root and" \
	    "apt-get): generated code will run WITHOUT the sandbox's kernel-side filesystem" \
	    "confinement. Install it: apt-get install bubblewrap" >&2

$(STAMP): envs/requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r envs/requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

demo: setup  ## the whole DAG on config/smoke.yaml (CPU, offline): every smoke table and figure
	$(SMK) all --configfile config/smoke.yaml
	$(BIN)/python -m repro.report.html_report --configfile config/smoke.yaml
	@echo "tables: results/tables/  figures: results/figures/  report: results/report.html"

# One self-contained HTML page of whatever is built under results/ (tables beside the paper's
# values, figures, metric variants, the config, what is not built yet). CONFIG: the config the
# run used, e.g. `make report CONFIG=config/smoke.yaml` after `make demo`.
CONFIG ?= config/config.yaml
report: setup
	$(BIN)/python -m repro.report.html_report --configfile $(CONFIG) --out results/report.html

unlock: setup  ## after Snakemake itself was killed: remove its stale lock if no Snakemake runs here
	$(BIN)/python -m repro.unlock

# DATA: a directory of JSONL samples laid out as config/small-cpu.yaml's header says (default: its
# data_root, data/ in the project)
DATA ?=
small-cpu: setup  ## real data offline on CPU: config/small-cpu.yaml's tables (<= 60 min on 2 cores), DATA=dir
	$(SMK) all --configfile config/small-cpu.yaml $(if $(DATA),--config data_root=$(abspath $(DATA)))
	$(BIN)/python -m repro.report.baselines --configfile config/small-cpu.yaml
	$(BIN)/python -m repro.report.html_report --configfile config/small-cpu.yaml
	@echo "tables: results/tables/  trivial baselines: results/baselines/baselines.md  report: results/report.html"

test: setup  ## unit tests, workflow tests (dry runs, smoke DAG, staleness, profiles, live SLURM), lint
	$(BIN)/python -m pytest

# test-fast's pytest-xdist processes (whole files per process: module fixtures are built once)
TEST_WORKERS ?= 2

test-fast: setup  ## the edit-test loop: every test but the smoke DAG build and SLURM (<= 3 min)
	$(BIN)/python -m pytest -m "not slow and not slurm" -n $(TEST_WORKERS) --dist loadfile

test-slurm: setup  ## only the SLURM tests: profile/sbatch calls, cluster helpers, live one-node cluster (root)
	$(BIN)/python -m pytest tests/test_cluster.py tests/workflow/test_resources.py tests/workflow/test_hub.py \
		tests/test_train_cluster.py \
		tests/workflow/test_slurm_profile.py tests/workflow/test_slurm_live.py

lint: setup  ## ruff, snakefmt (formatting of Snakefile and workflow/), snakemake --lint
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/snakefmt --check Snakefile workflow/
	$(BIN)/snakemake --lint --configfile config/smoke.yaml

bench: setup  ## budgets of the spine: smoke DAG wall time, DAG build and no-op rerun times
	$(BIN)/python benchmarks/bench_workflow.py

bench-packing: setup  ## lm/stream tokenize on a 100M-token slice of DATA (default data/), sharded vs in memory (~4 min)
	$(BIN)/python benchmarks/bench_packing.py $(DATA)

gpu-check: setup  ## on one CUDA GPU (<= 8 min on an H100): runs, CPU agreement, speed, paper-scale fit
	$(BIN)/python benchmarks/gpu_check.py --device cuda

TARGET ?= paper
plan: setup  ## cost of TARGET before running it: jobs, GPU-hours, tokens, disk (PLAN_ARGS="--gpu h100")
	$(BIN)/python -m repro.plan $(TARGET) $(PLAN_ARGS)

# The tracked picture is replaced only when both steps succeed (never truncated by a missing
# graphviz or a failing DAG build).
dag: setup
	@command -v dot >/dev/null 2>&1 || { echo "make dag: graphviz's 'dot' is not installed" \
		"(apt-get install graphviz); docs/rulegraph.svg left as it was" >&2; exit 1; }
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(BIN)/snakemake paper --rulegraph dot > "$$tmp/dag.dot" && \
	dot -Tsvg "$$tmp/dag.dot" > "$$tmp/dag.svg" && test -s "$$tmp/dag.svg" && \
	mv "$$tmp/dag.svg" docs/rulegraph.svg && echo "docs/rulegraph.svg written" || \
	{ echo "make dag: failed; docs/rulegraph.svg left as it was" >&2; exit 1; }

lock:  ## regenerate the lock from a fresh venv of the current pyproject dependencies
	rm -rf /tmp/repro-lock && $(PYTHON) -m venv /tmp/repro-lock
	/tmp/repro-lock/bin/pip install --quiet torch==2.13.0 -e . snakemake-executor-plugin-slurm pytest ruff snakefmt
	/tmp/repro-lock/bin/pip freeze --exclude-editable | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/' > envs/requirements.lock.new

clean:
	rm -rf results logs benchmarks/*/ .snakemake
