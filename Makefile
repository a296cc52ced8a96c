# One command for every habit. `make demo` and `make test` work on a fresh machine with
# only Python >= 3.11 and make: they create .venv and install what they need.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: install demo test test-fast soak lint format bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "gpu-reactor needs Python >= 3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/gpu-reactor demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)  # everything but the fault suite (tests/faults)
	$(BIN)/python -m pytest -q --ignore=tests/faults

soak: $(STAMP)
	$(BIN)/python -m pytest -q --soak tests/faults

lint: $(STAMP)  # style, formatting, types and the architecture's import contracts
	$(BIN)/ruff check reactor worker tests bench
	$(BIN)/ruff format --check reactor worker tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix --select I reactor worker tests bench
	$(BIN)/ruff format reactor worker tests bench

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .gpu-reactor .pytest_cache .ruff_cache .mypy_cache
