# gdbench: `make run` (set up, run the default quick suite, write its report) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SUITE ?= quick
RUN_DIR ?= runs/$(SUITE)

.PHONY: install run report reference reference-device test browser lint format clean bench docs paper

# (Re)install whenever pyproject.toml changes; the stamp records a finished install.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,docs]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/gdbench run --suite $(SUITE) --out $(RUN_DIR)
	$(BIN)/gdbench report $(RUN_DIR) --out $(RUN_DIR)/report

report: install
	$(BIN)/gdbench report $(RUN_DIR) --out $(RUN_DIR)/report

# The committed reference runs the README cites (results/reference/), made again from scratch
# (the old run directories are replaced): each suite from a cold compilation cache, then its
# report. Takes about 35 minutes on a 2-core CPU.
REFERENCE_SUITES ?= quick likelihood ngjordan hybrids robustness
reference: install
	for s in $(REFERENCE_SUITES); do \
	  cache=$$(mktemp -d) && rm -rf results/reference/$$s && \
	  $(BIN)/gdbench run --suite $$s --out results/reference/$$s --compile-cache $$cache \
	    --no-progress && \
	  rm -rf $$cache && \
	  $(BIN)/gdbench report results/reference/$$s --out results/reference/$$s/report || exit 1; \
	done

# The reference runs on an accelerator (bench/device_reference.py): on a machine whose own
# Python has JAX for its GPU/TPU and gdbench's other packages (no venv is made, nothing is
# downloaded), the quick and likelihood suites from a cold compilation cache into
# results/reference/<device>/, with reports, the comparison with the CPU reference runs and a
# timings table. DEVICE_FLAGS: e.g. --archive $$OUT (pack the runs there after each suite).
DEVICE_SUITES ?= quick,likelihood
DEVICE_FLAGS ?=
reference-device:
	$(PYTHON) bench/source_tree.py -m gdbench.device_reference \
	  --suites $(DEVICE_SUITES) $(DEVICE_FLAGS)

# Benchmarks against scikit-learn and PyTorch (bench/benchmarks/): writes BENCH_OUT (Markdown
# table) and the same name with .json (raw numbers, machine). About 35 minutes on a 2-core CPU,
# 25 of them the whole ngjordan suite against its scikit-learn loop (benchmark `suite`);
# BENCH_FLAGS=--quick for a short smoke run, BENCH_FLAGS="--only ngjordan,mlp,scaling" without
# the suite. PyTorch (the MLP baseline) is installed into the
# venv here if missing; it is never a dependency of gdbench.
BENCH_OUT ?= results/benchmarks/latest.md
BENCH_FLAGS ?=
TORCH_VERSION := 2.13.0
bench: install
	@$(BIN)/python -c "import sys, torch; sys.exit(torch.__version__.split('+')[0] != '$(TORCH_VERSION)')" \
	  2>/dev/null || $(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m gdbench.benchmarks --out $(BENCH_OUT) $(BENCH_FLAGS)

# pytest in TEST_WORKERS processes (pytest-xdist), each test module in one of them: on a 2-core
# CPU 2 workers took the suite from 31 to 24 minutes (XLA's compiler and the fits leave a core
# idle part of the time). TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2

test: install browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -rsfE -n $(TEST_WORKERS) --dist loadfile

# A quick subset: at least one representative test of every test module (marked
# @pytest.mark.fast), about 1-2 minutes on a 2-core CPU against 20+ for `make test`.
.PHONY: test-fast
test-fast: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -rsfE -m fast

# Headless Chromium for the HTML report's browser test (tests/test_html.py), which is skipped
# without it. Installed with apt-get when we are root; never needed by `make run`.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium (apt-get) for the HTML browser test"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
	  || { apt-get update -qq >/dev/null 2>&1 \
	       && apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; } \
	  || echo "WARNING: could not install chromium with apt-get; the HTML browser test will be skipped"; \
	else \
	  echo "note: chromium not found (install it, e.g. apt-get install chromium, as root); the HTML browser test will be skipped"; \
	fi

# The documentation site (MkDocs, docs/ -> site/): first the generated blocks of README.md and
# docs/*.md are written again from results/reference/ and results/benchmarks/latest.json
# (reports/docgen.py), then the site is built with --strict (a broken link fails).
docs: install
	$(BIN)/python -m gdbench.reports.docgen README.md docs/*.md
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# An example two-column paper (pdflatex) of every LaTeX table and the headline figures of the
# reports in PAPER_REPORTS; fails on a LaTeX error, an overfull box, a table scaled below 0.9 or
# a label defined twice (reports/paper.py). Needs pdflatex with booktabs, siunitx and geometry.
PAPER_REPORTS ?= results/reference/quick/report results/reference/ngjordan/report
PAPER_OUT ?= runs/paper
paper: install
	$(BIN)/python -c "import sys; from gdbench.reports.paper import main; sys.exit(main())" \
	  $(PAPER_OUT) $(PAPER_REPORTS)

lint: install
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) runs site .pytest_cache .ruff_cache *.egg-info
