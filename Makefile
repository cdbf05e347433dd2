# Developer entry points. `make test` is what CI runs (via .ci/run).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := dev,postgres,server,grpc,otel

.DEFAULT_GOAL := help
.PHONY: help venv system run lint format test bench clean distclean

help:
	@echo "make venv       create $(VENV) and install taskloom[$(EXTRAS)] (again when pyproject.toml changes)"
	@echo "make system     install the Debian packages the tests need (chromium for the browser tests)"
	@echo "make run        run examples/quickstart.py on embedded SQLite"
	@echo "make lint       ruff check, ruff format --check, mypy --strict"
	@echo "make format     ruff format and ruff check --fix"
	@echo "make test       lint, then the test suite in parallel"
	@echo "make bench      run the benchmarks"
	@echo "make clean      remove caches and build output (distclean also removes $(VENV))"

venv: $(VENV)/.installed

# The stamp makes the install rerun whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[$(EXTRAS)]'
	touch $@

# Debian's Chromium drives the dashboard's browser tests (Playwright launches it).
system:
	@test -x /usr/bin/chromium || { \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

run: venv
	$(BIN)/python -m examples.quickstart

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict taskloom
	for app in samples/*/app.py; do $(BIN)/mypy --strict "$$app" || exit 1; done

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: venv system
	$(MAKE) lint
	$(BIN)/pytest -n auto -q

bench: venv
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache htmlcov .coverage
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
