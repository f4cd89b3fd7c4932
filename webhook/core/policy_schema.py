"""The JSON Schema of the policy document (``policy.yaml`` in the security team's ConfigMap).

Kept as data in the core so every door (webhook, Reconciler, CLI) validates with the same schema;
``policies/egress-policy.schema.json`` is this dict printed by ``egress-guard policy schema``
(a unit test keeps the two equal).
"""

from __future__ import annotations

from typing import Any

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
_LABELS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {"type": "string", "maxLength": 63},
    "propertyNames": {"maxLength": 317, "minLength": 1},
}
_GATEWAY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "An egress gateway: its Service name in the egress namespace and its pod "
    "labels. '{service}' in either is replaced by the external service's name.",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 63},
        "selector": {**_LABELS, "minProperties": 1},
    },
}

POLICY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://egress-guard.dev/schemas/egress-policy.schema.json",
    "title": "egress-guard policy",
    "description": "The egress allow list: external services, who may reach them, and how.",
    "type": "object",
    "additionalProperties": False,
    "required": ["egress", "externalServices"],
    "properties": {
        "apiVersion": {"const": "egress-guard.dev/v1alpha1"},
        "kind": {"const": "EgressPolicy"},
        "mode": {
            "enum": ["enforce", "audit"],
            "default": "enforce",
            "description": "enforce denies violations; audit admits them with warnings.",
        },
        "clusterDomain": {"type": "string", "default": "cluster.local", "minLength": 1},
        "trustDomain": {"type": "string", "default": "cluster.local", "minLength": 1},
        "istioVersion": {
            "type": "string",
            "pattern": r"^1\.[0-9]+$",
            "default": "1.30",
            "description": "Minor version of the guarded control plane; decides how '~' in "
            "Sidecar hosts is read (1.31+ subtracts, older rejects).",
        },
        "excludedNamespaces": {
            "type": "array",
            "items": {"type": "string", "pattern": _DNS_LABEL},
            "uniqueItems": True,
            "description": "Namespaces the guardrail leaves alone. Default: kube-system, "
            "kube-public, kube-node-lease, istio-system, egress-guard.",
        },
        "controller": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "users": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "uniqueItems": True,
                    "description": "Kubernetes user names (e.g. system:serviceaccount:NS:SA) "
                    "allowed to change objects labelled as managed by egress-guard.",
                }
            },
        },
        "securityTeam": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "users": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "uniqueItems": True,
                    "description": "Kubernetes user names that may write in the egress "
                    "namespace (its ServiceEntries, Gateways, routes, gateway Deployments).",
                },
                "groups": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "uniqueItems": True,
                    "description": "Kubernetes groups whose members may write in the egress "
                    "namespace.",
                },
            },
            "description": "The identities owning the egress namespace. When set, anyone else "
            "(but the controller and Kubernetes' own controllers) is refused there, whatever "
            "the kind; when unset, only the egress rules of ServiceEntries, Gateways, "
            "VirtualServices and DestinationRules admit writes there.",
        },
        "internalNetworks": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "description": "CIDRs inside the cluster (pod and service ranges, node networks). "
            "Hand-made Endpoints/EndpointSlices and ServiceEntry addresses may point only here "
            "or at addresses of allowed external services. Default: none.",
        },
        "networkPolicies": {
            "type": "boolean",
            "default": False,
            "description": "Generate a NetworkPolicy per enforced namespace that allows egress "
            "only to DNS, istiod and the egress gateways.",
        },
        "egress": {
            "type": "object",
            "additionalProperties": False,
            "required": ["namespace"],
            "properties": {
                "namespace": {"type": "string", "pattern": _DNS_LABEL},
                "gatewayLabels": {
                    **_LABELS,
                    "description": "Labels every egress gateway pod carries besides its "
                    "selector ('{service}' is replaced by the service name). Istio's gateway "
                    "charts label their pods 'istio: <name>'. A tenant Gateway whose selector "
                    "contradicts one of them cannot select an egress gateway and is admitted.",
                },
                "gateway": {
                    **_GATEWAY,
                    "properties": {
                        **_GATEWAY["properties"],
                        "mode": {"enum": ["shared", "dedicated"], "default": "shared"},
                    },
                },
            },
        },
        "externalServices": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "hosts", "ports"],
                "properties": {
                    "name": {"type": "string", "pattern": _DNS_LABEL},
                    "hosts": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 100000,
                        "items": {"type": "string", "minLength": 1, "maxLength": 255},
                    },
                    "ports": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["number", "protocol"],
                            "properties": {
                                "number": {"type": "integer", "minimum": 1, "maximum": 65535},
                                "protocol": {
                                    "enum": ["HTTP", "HTTPS", "TLS", "TCP", "HTTP2", "GRPC"]
                                },
                            },
                        },
                    },
                    "tlsOrigination": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["port"],
                        "description": "The gateway upgrades the service's HTTP ports to TLS "
                        "on this port of the external host.",
                        "properties": {"port": {"type": "integer", "minimum": 1, "maximum": 65535}},
                    },
                    "addresses": {
                        "type": "array",
                        "items": {"type": "string", "minLength": 1},
                        "description": "IPs or CIDRs that tenant ServiceEntries of this service "
                        "may name (addresses or endpoints).",
                    },
                    "gateway": _GATEWAY,
                },
            },
        },
        "maxExceptionDays": {
            "type": "integer",
            "minimum": 1,
            "description": "Longest an exception may run, counted from the moment the policy is "
            "validated (at apply); longer ones are refused. Default: no limit.",
        },
        "exceptions": {
            "type": "array",
            "description": "Temporary grants with an owner, a ticket and an end. They are "
            "honoured until 'expires' and then stop by themselves, everywhere at once.",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "namespaces", "owner", "ticket", "expires"],
                "properties": {
                    "name": {"type": "string", "pattern": _DNS_LABEL},
                    "namespaces": {
                        "type": "array",
                        "minItems": 1,
                        "uniqueItems": True,
                        "items": {"type": "string", "pattern": _DNS_LABEL},
                    },
                    "workloadLabels": _LABELS,
                    "serviceAccount": {"type": "string", "pattern": _DNS_SUBDOMAIN},
                    "services": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "string", "minLength": 1},
                        "description": "External services (by name) the sources may reach.",
                    },
                    "hosts": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "string", "minLength": 1, "maxLength": 255},
                        "description": "Hosts the sources may reach; each must be covered by "
                        "an external service, and the exception grants that service.",
                    },
                    "owner": {"type": "string", "minLength": 1},
                    "ticket": {"type": "string", "minLength": 1},
                    "expires": {
                        "type": "string",
                        "minLength": 1,
                        "description": "RFC 3339 instant with an offset, e.g. "
                        "2026-12-24T18:00:00Z; the grant ends at that instant.",
                    },
                    "reason": {"type": "string"},
                },
            },
        },
        "allow": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["from", "to"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "from": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["namespace"],
                        "properties": {
                            "namespace": {
                                "type": "string",
                                "anyOf": [{"const": "*"}, {"pattern": _DNS_LABEL}],
                            },
                            "workloadLabels": _LABELS,
                            "serviceAccount": {"type": "string", "pattern": _DNS_SUBDOMAIN},
                        },
                    },
                    "to": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "string", "minLength": 1},
                    },
                },
            },
        },
    },
}
