# tradefleet — the two commands that work on a fresh machine:
#   make demo   simulator + bot on embedded defaults (SQLite, in-process lease), no Docker, no MongoDB
#   make test   every test, plus lint, types and layer contracts
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-latest lint check install bench bench-backtest clean kind-up kind-down helm-venv

# The tests run on the locked versions (requirements/test.lock: the images' runtime pins plus the
# test tools, with hashes), so a new upstream release cannot turn CI red by itself; `make test-latest`
# tries the newest releases on purpose. Regenerate the locks with scripts/lock.sh.
$(STAMP): pyproject.toml requirements/test.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements/test.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tradefleet demo

lint: $(STAMP)
	$(BIN)/ruff check bot sim operator tests bench
	$(BIN)/ruff format --check bot sim operator tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint helm-venv
	$(BIN)/pytest -q -p no:cacheprovider

# Non-blocking canary (not part of `make test`/CI): every dependency at its newest release in
# .venv-latest/, then the whole suite. A failure here is a break to investigate before re-locking.
test-latest:
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/pip install --quiet --upgrade pip
	.venv-latest/bin/pip install --quiet --upgrade -e '.[test]'
	.venv-latest/bin/pip list --format=freeze > .venv-latest/versions.txt
	.venv-latest/bin/pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python -m bench.ingest --quick

# The real engine's parameter grid vs backtesting.py (installed here from the bench extra) and numpy.
bench-backtest: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.backtest

clean:
	rm -rf $(VENV) .venv-latest .pytest_cache .mypy_cache .ruff_cache build *.egg-info

# Python >= 3.12 venv with helm-sdkpy (real Helm library) for tests/deploy; fails loudly if no 3.12.
helm-venv:
	bash scripts/helm-venv.sh

# A local kind cluster with both images, the chart and the example paper bot (needs docker, kind, helm).
kind-up:
	bash scripts/kind-up.sh

kind-down:
	bash scripts/kind-down.sh
