# Entry points a newcomer finds in the README. Everything installs into the project folder.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast bench lint format clean

setup: $(STAMP) node_modules/.installed

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) (Python >= 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch node_modules/.installed

demo: setup
	$(BIN)/onchain demo
	$(BIN)/onchain serve --demo  # serves in a terminal (Ctrl-C stops); else checks and exits

# Two workers (the machine's two cores), a test file each: a file's module fixtures (its devnet)
# stay in one process; each worker has its own PostgreSQL database and tmp dirs.
test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The quick loop: unit tests only (no devnet, no PostgreSQL, no programs started), under a minute.
test-fast: setup
	$(BIN)/python -m pytest -q -m "not devnet and not postgres and not slow"

bench: setup
	$(BIN)/python bench/bench_scan.py
	$(BIN)/python bench/bench_scan_versions.py
	$(BIN)/python bench/bench_risk.py
	$(BIN)/python bench/bench_store.py
	$(BIN)/python bench/bench_rpc_faults.py
	$(BIN)/python bench/bench_api.py
	$(BIN)/python bench/bench_incremental.py

lint: setup
	$(BIN)/ruff check onchain tests bench
	$(BIN)/ruff format --check onchain tests bench
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format onchain tests bench
	$(BIN)/ruff check --fix onchain tests bench

clean:
	rm -rf $(VENV) node_modules .cache
