# tradefleet — the two commands that work on a fresh machine:
#   make demo   simulator + bot on embedded defaults (SQLite, in-process lease), no Docker, no MongoDB
#   make test   every test, plus lint, types and layer contracts
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NATIVE_STAMP := $(VENV)/.native
# Rust build outputs stay outside the repo, shared by clones and CI on this machine.
CARGO_TARGET_DIR ?= /var/cache/tradefleet/native-target
export PATH := $(PATH):$(HOME)/.cargo/bin

.PHONY: demo test test-latest lint check install bench bench-backtest clean kind-up kind-down k8s-build cluster-up cluster-down

# The tests run on the locked versions (requirements/test.lock: the images' runtime pins plus the
# test tools, with hashes), so a new upstream release cannot turn CI red by itself; `make test-latest`
# tries the newest releases on purpose. Regenerate the locks with scripts/lock.sh.
$(STAMP): pyproject.toml requirements/test.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements/test.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

# The native book (native/, Rust via PyO3 + maturin) when cargo is present; without it the bot runs
# on the pure-Python book and says so once in its log.
$(NATIVE_STAMP): $(STAMP) native/Cargo.toml native/Cargo.lock native/pyproject.toml native/tradefleet_native.pyi $(wildcard native/src/*.rs)
	@if command -v cargo >/dev/null; then \
	  mkdir -p $(CARGO_TARGET_DIR) && $(BIN)/pip install --quiet maturin==1.16.0 && \
	  PATH="$(abspath $(BIN)):$$PATH" CARGO_TARGET_DIR=$(CARGO_TARGET_DIR) \
	    nice $(BIN)/pip install --quiet --no-build-isolation --force-reinstall --no-deps ./native; \
	else \
	  echo "cargo not found: tradefleet_native not built; the bot runs on the pure-Python book"; \
	fi
	touch $@

install: $(STAMP) $(NATIVE_STAMP)

demo: install
	$(BIN)/tradefleet demo

lint: install
	$(BIN)/ruff check bot sim operator tests bench
	$(BIN)/ruff format --check bot sim operator tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	@if command -v cargo >/dev/null; then \
	  cargo fmt --check --manifest-path native/Cargo.toml && \
	  CARGO_TARGET_DIR=$(CARGO_TARGET_DIR) nice cargo clippy --quiet --release --manifest-path native/Cargo.toml -- -D warnings; \
	fi

test: lint k8s-build
	$(BIN)/pytest -q -p no:cacheprovider --durations=30

# Non-blocking canary (not part of `make test`/CI): every dependency at its newest release in
# .venv-latest/, then the whole suite. A failure here is a break to investigate before re-locking.
test-latest:
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/pip install --quiet --upgrade pip
	.venv-latest/bin/pip install --quiet --upgrade -e '.[test]'
	.venv-latest/bin/pip list --format=freeze > .venv-latest/versions.txt
	.venv-latest/bin/pytest -q -p no:cacheprovider

bench: install
	$(BIN)/pip install --quiet cryptofeed==2.4.1  # the `bench` extra: a peer the benchmark compares
	$(BIN)/python -m bench.ingest --quick

# The real engine's parameter grid vs backtesting.py (installed here from the bench extra) and numpy.
bench-backtest: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.backtest

clean:
	rm -rf $(VENV) .venv-latest .pytest_cache .mypy_cache .ruff_cache build *.egg-info

# A local kind cluster with both images, the chart and the example paper bot (needs docker, kind, helm).
kind-up:
	bash scripts/kind-up.sh

kind-down:
	bash scripts/kind-down.sh

# Kubernetes from source (etcd, kube-apiserver, kube-controller-manager, helm; and the node's
# kubelet, kube-scheduler, kube-proxy, CoreDNS, crictl, pause), pinned, built once
# into /var/cache/tradefleet/k8s/ (needs Go; the first build takes many minutes, later ones none).
k8s-build:
	bash scripts/k8s-build.sh --node

# A throwaway cluster for a contributor: the control plane, and a node where this machine can run
# one (root, containerd, Debian's CNI plugins, Docker for the images; else the reason is printed),
# with our images loaded when the Docker engine has them (scripts/images.sh builds them). Writes
# .cluster/kubeconfig (admin). The tests start their own (tests/plugins/kube.py). Idempotent.
cluster-up:
	bash scripts/cluster.sh up .cluster --node
	@if [ -f .cluster/mode ] && [ "$$(cat .cluster/mode)" = node ]; then \
	  for i in tradefleet-bot:dev tradefleet-operator:dev redis:7.2; do \
	    if docker image inspect $$i >/dev/null 2>&1; then bash scripts/cluster.sh load .cluster $$i; \
	    else echo "cluster-up: $$i is not in Docker (scripts/images.sh all), not loaded"; fi; \
	  done; \
	fi

cluster-down:
	bash scripts/cluster.sh down .cluster
