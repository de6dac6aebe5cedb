# Each target makes its own virtual environment, so it works on a fresh machine
# (only Python, pip, gcc and g++ are assumed).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: test test-gpu test-sanitize lint fmt demo bench compare clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test,train,demo,lint,distribute]"
	touch $(STAMP)

# The demo's own, smaller install: no CuPy or CUDA wheels on a CPU machine (the test extra has them,
# to check the GPU path without a GPU). For DEVICE=gpu add CuPy: $(BIN)/pip install -e ".[cuda12]"
$(DEMO_STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[demo,jit]"
	touch $(DEMO_STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not gpu and not sanitize" tests

test-gpu: $(STAMP)
	$(BIN)/python -m pytest -q -m gpu -rs tests

test-sanitize: $(STAMP)
	$(BIN)/python -m pytest -q -m sanitize tests

lint: $(STAMP)
	$(BIN)/ruff check accel tests bench

fmt: $(STAMP)
	$(BIN)/ruff format accel tests bench

demo: $(DEMO_STAMP)
	$(BIN)/python -m accel.demo --device $${DEVICE:-cpu}

bench: $(STAMP)
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python -m pytest -q bench/bench_*.py --benchmark-only

compare: $(STAMP)
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python -m bench.compare

clean:
	rm -rf $(VENV) build .pytest_cache
