# gdbench: `make run` (set up, run the default quick suite, write its report) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SUITE ?= quick
RUN_DIR ?= runs/$(SUITE)

.PHONY: install run report test lint format clean

# (Re)install whenever pyproject.toml changes; the stamp records a finished install.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/gdbench run --suite $(SUITE) --out $(RUN_DIR)
	$(BIN)/gdbench report $(RUN_DIR) --out $(RUN_DIR)/report

report: install
	$(BIN)/gdbench report $(RUN_DIR) --out $(RUN_DIR)/report

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache *.egg-info
