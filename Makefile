# egress-guard developer targets: the e2e control plane, the Python tools and tests, benchmarks.

PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)

# --- e2e control plane -------------------------------------------------------------
# `make tools` builds (first time ~5 min) or finds the pinned etcd, kube-apiserver,
# kubectl, helm and Istio CRDs; the directory holding them is its last line of output.
# `make e2e-up` starts etcd + kube-apiserver + our webhook + Istio's sidecar injector on
# 127.0.0.1 and writes .e2e/kubeconfig; `make e2e-down` stops exactly what it started.
# E2E_UP_ARGS passes options to `python -m tests.e2e.harness up`, e.g. --no-webhook,
# --no-injector, --policy FILE, --identity admin.
E2E_UP_ARGS ?=
.PHONY: tools e2e-up e2e-down e2e-status

tools:
	@bash tools/build.sh

e2e-up:
	@$(PYTHON) -m tests.e2e.harness up $(E2E_UP_ARGS)

e2e-down:
	@$(PYTHON) -m tests.e2e.harness down

e2e-status:
	@$(PYTHON) -m tests.e2e.harness status

# --- Python: install, run, test ----------------------------------------------------
# `make run` starts the webhook on https://127.0.0.1:8443 with the embedded default policy
# (banzai-demo) and a generated dev certificate: no cluster needed.
# `make test` is the whole suite: lint, types, import contracts, unit, integration and e2e
# tests (the e2e control plane is built on first use, ~6 min cold).
VENV := .venv
VENV_STAMP := $(VENV)/.installed

.PHONY: install run test lint unit integration e2e bench bench-cluster

$(VENV_STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(VENV_STAMP)

run: $(VENV_STAMP)
	$(VENV)/bin/egress-guard serve

lint: $(VENV_STAMP)
	$(VENV)/bin/ruff check webhook tests
	$(VENV)/bin/ruff format --check webhook tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint tools
	$(VENV)/bin/python -m pytest

unit: $(VENV_STAMP)
	$(VENV)/bin/python -m pytest -m unit

integration: $(VENV_STAMP)
	$(VENV)/bin/python -m pytest -m integration

e2e: $(VENV_STAMP)
	$(VENV)/bin/python -m pytest -m e2e

# Service benchmark (~12 min): egress-guard vs a do-nothing flask handler (the targets' ceiling)
# and a do-nothing plain WSGI callable (the stack floor), same gunicorn/TLS settings, on unique
# reviews (the identical-review cache row apart), in rotating rounds; then where a review's CPU
# goes, allow-list lookup and compile, worst-case objects, worker RSS.
# Both benchmark targets keep their summaries in tests/bench/results/ and re-render the README's
# performance section from them.
bench: $(VENV_STAMP)
	$(VENV)/bin/python -m tests.bench.bench_service --save
	$(VENV)/bin/python -m tests.bench.results

# --- in-cluster benchmark ----------------------------------------------------------
# `make bench-cluster` times ServiceEntry creates on a harness control plane with no policy,
# a CEL ValidatingAdmissionPolicy, do-nothing flask and plain-WSGI webhooks and egress-guard,
# side by side (~2 min); then webhook calls for scale and rollout patches with and without
# matchConditions, and ConfigMap edit to enforcement by allow-list size; prints markdown tables.
# BENCH_CREATES=N sets the creates per configuration, BENCH_ROUNDS the rotating rounds.
BENCH_CREATES ?= 2000
BENCH_ROUNDS ?= 5

bench-cluster: $(VENV_STAMP)
	$(VENV)/bin/python -m tests.bench.bench_cluster --creates $(BENCH_CREATES) --rounds $(BENCH_ROUNDS) --save
	$(VENV)/bin/python -m tests.bench.bench_match_conditions --save
	$(VENV)/bin/python -m tests.bench.bench_policy_edit --save
	$(VENV)/bin/python -m tests.bench.results

# --- mesh oracle -------------------------------------------------------------------
# `make mesh` runs the tests judged by Istio's own config generator and traffic simulation
# (tools/meshsim, a Go test binary built into the tools cache on first use, ~5 min cold).
.PHONY: mesh

mesh: $(VENV_STAMP)
	$(VENV)/bin/python -m pytest -m mesh

# --- admission proven against Istio ------------------------------------------------
# `make fuzz-mesh` draws FUZZ_EXAMPLES tenant attempts (ServiceEntries, VirtualServices,
# DestinationRules, Sidecars, WorkloadEntries, Gateways, Gateway API routes) with FUZZ_SEED,
# decides them with the webhook's engine, and lets Istio's own config generator and traffic
# simulation (the meshsim oracle from `make tools`) say where every call ends in a mesh holding
# the admitted ones; prints objects tried / admitted / unsafe and objects per second.
.PHONY: fuzz-mesh
fuzz-mesh: FUZZ_SEED ?= 20261201
fuzz-mesh: FUZZ_EXAMPLES ?= 1000

fuzz-mesh: $(VENV_STAMP) tools
	$(VENV)/bin/python -m tests.meshfuzz.fuzz --seed $(FUZZ_SEED) --examples $(FUZZ_EXAMPLES)

# --- faults: fuzzing and soak ------------------------------------------------------
# `make fuzz` runs the review handler's fuzz properties FUZZ_EXAMPLES times longer than CI,
# from FUZZ_SEED (printed, so a failure can be replayed with the same seed).
# `make fuzz-atheris` fuzzes the same handler coverage-guided (atheris, libFuzzer) for
# ATHERIS_SECONDS; its corpus and any crash-* inputs stay in .fuzz/.
# `make soak` runs the service under steady load for SOAK_SECONDS and prints RSS per process.
fuzz fuzz-atheris: FUZZ_SEED ?= $(shell date +%s)
fuzz: FUZZ_EXAMPLES ?= 20
ATHERIS_SECONDS ?= 300
SOAK_SECONDS ?= 600
.PHONY: fuzz fuzz-atheris soak

fuzz: $(VENV_STAMP)
	@echo "FUZZ_SEED=$(FUZZ_SEED) FUZZ_EXAMPLES=$(FUZZ_EXAMPLES)"
	FUZZ_SEED=$(FUZZ_SEED) FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(VENV)/bin/python -m pytest -q \
		-p no:cacheprovider tests/unit/test_fuzz_review_handler.py

fuzz-atheris: $(VENV_STAMP)
	$(VENV)/bin/python -m pip install --quiet -e '.[fuzz]'
	@mkdir -p .fuzz/corpus
	$(VENV)/bin/python -m tests.fuzz_atheris .fuzz/corpus -artifact_prefix=.fuzz/ \
		-max_total_time=$(ATHERIS_SECONDS) -seed=$(FUZZ_SEED) -max_len=65536

soak: $(VENV_STAMP)
	$(VENV)/bin/python -m tests.bench.soak --seconds $(SOAK_SECONDS)
