# egress-guard developer targets. Each block is owned by one area; append new blocks.

PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)

# --- e2e control plane -------------------------------------------------------------
# `make tools` builds (first time ~5 min) or finds the pinned etcd, kube-apiserver,
# kubectl, helm and Istio CRDs; the directory holding them is its last line of output.
# `make e2e-up` starts etcd + kube-apiserver + our webhook on 127.0.0.1 and writes
# .e2e/kubeconfig; `make e2e-down` stops exactly what it started.
.PHONY: tools e2e-up e2e-down e2e-status

tools:
	@bash tools/build.sh

e2e-up:
	@$(PYTHON) tests/e2e/cluster.py up

e2e-down:
	@$(PYTHON) tests/e2e/cluster.py down

e2e-status:
	@$(PYTHON) tests/e2e/cluster.py status
