"""egress-guard's webhooks registered in a cluster.

What they intercept is derived by the product itself (``webhook.admission.registration``, from
the checks and the generated kinds); the chart is tested against the same function, so the
harness registers exactly what an installation does.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any, Final

from tests.e2e.harness.common import LOOPBACK, WEBHOOK_NAMESPACE
from tests.e2e.harness.kubectl import Kubectl
from tests.e2e.harness.processes import wait_until
from webhook.admission.registration import admission_rules, validating_match_conditions

WEBHOOK_CONFIGURATION_NAME: Final = "egress-guard"

# Namespaces the webhook must never gate: the control plane's own, Istio's, and the
# webhook's (else a down webhook could not be repaired: failurePolicy is Fail).
EXCLUDED_NAMESPACES: Final = (
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "istio-system",
    WEBHOOK_NAMESPACE,
)


def webhook_configurations(
    base_url: str, ca_bundle_pem: bytes, *, gateway_api: bool
) -> list[dict[str, Any]]:
    """ValidatingWebhookConfiguration + MutatingWebhookConfiguration reaching ``base_url``."""
    rules = admission_rules(gateway_api=gateway_api)
    common: dict[str, Any] = {
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "matchPolicy": "Equivalent",
        "timeoutSeconds": 10,
        # kubernetes.io/metadata.name is set by the API server and immutable, so it
        # cannot be forged to opt out. For Namespace objects (cluster-scoped) the
        # selector is evaluated against the namespace itself, and NotIn also matches
        # when the label is absent, so `kubectl create ns foo` reaches the webhook.
        "namespaceSelector": {
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "NotIn",
                    "values": list(EXCLUDED_NAMESPACES),
                }
            ]
        },
    }
    ca_bundle = base64.b64encode(ca_bundle_pem).decode()
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": WEBHOOK_CONFIGURATION_NAME},
            "webhooks": [
                {
                    "name": "validate.egress-guard.dev",
                    "clientConfig": {"url": f"{base_url}/validate", "caBundle": ca_bundle},
                    "rules": rules["validating"],
                    "matchConditions": validating_match_conditions(),
                    **common,
                }
            ],
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": WEBHOOK_CONFIGURATION_NAME},
            "webhooks": [
                {
                    "name": "mutate.egress-guard.dev",
                    "clientConfig": {"url": f"{base_url}/mutate", "caBundle": ca_bundle},
                    "rules": rules["mutating"],
                    "reinvocationPolicy": "Never",
                    **common,
                }
            ],
        },
    ]


SYNC_PROBE_LABEL: Final = "egress-guard.dev/e2e-admission-sync-probe"


def wait_for_admission_sync(kubectl: Kubectl, *, timeout: float = 30.0) -> None:
    """Blocks until the API server's admission plugins see the configurations applied so far.

    Webhook configurations reach the admission chain through an informer, i.e. some time
    after they were created. A probe configuration is registered last, pointing at a port
    where nothing listens and selecting only objects with a probe label; once a dry-run
    create of such an object fails in that webhook, the informer has delivered the probe,
    and with it everything applied before it.
    """
    name = f"egress-guard-e2e-sync-{secrets.token_hex(4)}"
    probe_config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "sync-probe.egress-guard.dev",
                # Port 1 on loopback: connection refused at once.
                "clientConfig": {"url": f"https://{LOOPBACK}:1/sync-probe"},
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["configmaps"],
                        "scope": "Namespaced",
                    }
                ],
                "objectSelector": {"matchLabels": {SYNC_PROBE_LABEL: name}},
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 2,
            }
        ],
    }
    probe_object = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": "kube-system",
                "labels": {SYNC_PROBE_LABEL: name},
            },
        }
    )
    kubectl.apply(probe_config)
    try:

        def probe_rejected() -> bool:
            result = kubectl("create", "--dry-run=server", "-f", "-", input=probe_object)
            return result.returncode != 0 and "sync-probe.egress-guard.dev" in result.stderr

        wait_until("webhook configurations to take effect", probe_rejected, timeout=timeout)
    finally:
        kubectl("delete", "validatingwebhookconfiguration", name, "--ignore-not-found")
