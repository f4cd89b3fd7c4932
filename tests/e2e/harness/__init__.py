"""The e2e harness: a real control plane on loopback, egress-guard in it, and kubectl.

Modules, each one concern:

- ``common``        paths, loopback, timeouts, ``HarnessError``
- ``tools``         the pinned etcd, kube-apiserver, kubectl, helm and CRDs (``tools/build.sh``)
- ``pki``           certificates, issued by the product's own ``webhook.tls``
- ``processes``     child processes started and stopped exactly, readiness probes
- ``kubectl``       the kubectl wrapper, namespaces, kubeconfig files
- ``control_plane`` etcd + kube-apiserver with TLS, RBAC, audit and the CRDs
- ``webhooks``      what the webhooks intercept, their registration, admission sync
- ``accounts``      the components' ServiceAccounts with exactly the chart's RBAC
- ``serving``       ``egress-guard serve`` registered in a control plane
- ``injection``     Istio's own sidecar injector (``tools/istio-inject``), registered like istiod
- ``audit``         the API server's audit log, read back
- ``cli``           ``python -m tests.e2e.harness up|status|down|tools``

The pytest fixtures over these live in ``tests/e2e/conftest.py``.
"""

from __future__ import annotations

from tests.e2e.harness.accounts import (
    CONTROLLER_ACCOUNT,
    WEBHOOK_ACCOUNT,
    Grant,
    ServiceAccount,
    controller_grant,
    grant,
    service_account_kubeconfig,
    webhook_grant,
    with_controller_user,
    without,
)
from tests.e2e.harness.audit import AuditedCall, audited_calls
from tests.e2e.harness.common import (
    DEFAULT_STATE_DIR,
    FIELD_MANAGER,
    LOOPBACK,
    POLICY_CONFIGMAP,
    POLICY_KEY,
    POLICY_MANIFEST,
    REPO_ROOT,
    WEBHOOK_NAMESPACE,
    HarnessError,
    existing_cluster_kubeconfig,
)
from tests.e2e.harness.control_plane import ControlPlane, running_control_plane
from tests.e2e.harness.injection import Injector, injector_webhook_configuration
from tests.e2e.harness.kubectl import (
    Kubectl,
    create_namespace,
    kubeconfig_document,
    unique_name,
    write_kubeconfig,
)
from tests.e2e.harness.pki import CertKey, issue_cert, new_ca
from tests.e2e.harness.processes import ManagedProcess, free_port, wait_until
from tests.e2e.harness.serving import Webhook, egress_guard_command, policy_manifest
from tests.e2e.harness.tools import Tools, build_tools
from tests.e2e.harness.webhooks import (
    EXCLUDED_NAMESPACES,
    WEBHOOK_CONFIGURATION_NAME,
    admission_rules,
    wait_for_admission_sync,
    webhook_configurations,
)

__all__ = [
    "CONTROLLER_ACCOUNT",
    "DEFAULT_STATE_DIR",
    "EXCLUDED_NAMESPACES",
    "FIELD_MANAGER",
    "LOOPBACK",
    "POLICY_CONFIGMAP",
    "POLICY_KEY",
    "POLICY_MANIFEST",
    "REPO_ROOT",
    "WEBHOOK_ACCOUNT",
    "WEBHOOK_CONFIGURATION_NAME",
    "WEBHOOK_NAMESPACE",
    "AuditedCall",
    "CertKey",
    "ControlPlane",
    "Grant",
    "HarnessError",
    "Injector",
    "Kubectl",
    "ManagedProcess",
    "ServiceAccount",
    "Tools",
    "Webhook",
    "admission_rules",
    "audited_calls",
    "build_tools",
    "controller_grant",
    "create_namespace",
    "egress_guard_command",
    "existing_cluster_kubeconfig",
    "free_port",
    "grant",
    "injector_webhook_configuration",
    "issue_cert",
    "kubeconfig_document",
    "new_ca",
    "policy_manifest",
    "running_control_plane",
    "service_account_kubeconfig",
    "unique_name",
    "wait_for_admission_sync",
    "wait_until",
    "webhook_configurations",
    "webhook_grant",
    "with_controller_user",
    "without",
    "write_kubeconfig",
]
