# tradefleet — the two commands that work on a fresh machine:
#   make demo   simulator + bot on embedded defaults (SQLite, in-process lease), no Docker, no MongoDB
#   make test   every test, plus lint, types and layer contracts
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-latest lint check install bench clean kind-up kind-down k8s-build cluster-up cluster-down

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

test: lint k8s-build
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

clean:
	rm -rf $(VENV) .venv-latest .pytest_cache .mypy_cache .ruff_cache build *.egg-info

# A local kind cluster with both images, the chart and the example paper bot (needs docker, kind, helm).
kind-up:
	bash scripts/kind-up.sh

kind-down:
	bash scripts/kind-down.sh

# Kubernetes from source (etcd, kube-apiserver, kube-controller-manager, helm), pinned, built once
# into /var/cache/tradefleet/k8s/ (needs Go; the first build takes many minutes, later ones none).
k8s-build:
	bash scripts/k8s-build.sh

# A throwaway control plane on loopback for a contributor: writes .cluster/kubeconfig (admin).
# The tests start their own (tests/plugins/kube.py). Both targets are idempotent.
cluster-up:
	bash scripts/cluster.sh up .cluster

cluster-down:
	bash scripts/cluster.sh down .cluster
