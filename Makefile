# tradefleet — the two commands that work on a fresh machine:
#   make demo   simulator + bot on embedded defaults (SQLite, in-process lease), no Docker, no MongoDB
#   make test   every test, plus lint, types and layer contracts
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint check install bench clean kind-up kind-down helm-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
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

bench: $(STAMP)
	$(BIN)/python -m bench.ingest --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info

# Python >= 3.12 venv with helm-sdkpy (real Helm library) for tests/deploy; fails loudly if no 3.12.
helm-venv:
	bash scripts/helm-venv.sh

# A local kind cluster with both images, the chart and the example paper bot (needs docker, kind, helm).
kind-up:
	bash scripts/kind-up.sh

kind-down:
	bash scripts/kind-down.sh
