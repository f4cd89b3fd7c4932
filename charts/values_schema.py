#!/usr/bin/env python3
"""Write charts/egress-guard/values.schema.json: the chart's values, with the policy's own schema.

Why generated: the ``policy`` value must be validated by exactly the schema the webhook and the
controller use (``webhook.core.policy_schema.POLICY_SCHEMA``), so ``helm install`` refuses a policy
the webhook would reject instead of installing a webhook that stays unready. Run this after a
change of the policy schema or of values.yaml's keys; ``tests/integration/test_chart.py`` fails
while the file is out of date::

    python charts/values_schema.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

CHART = Path(__file__).resolve().parent / "egress-guard"
SCHEMA_FILE = CHART / "values.schema.json"

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_DURATION = r"^[0-9]+(h|m|s)$"


def _string(**extra: Any) -> dict[str, Any]:
    return {"type": "string", **extra}


def _object(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    # closed objects: a misspelt key is an error, not a silently ignored setting
    return {"type": "object", "additionalProperties": False, "properties": properties, **extra}


def _array(items: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "array", "items": items, **extra}


_FREE: dict[str, Any] = {"type": "object"}
_LABELS: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
_LOG_LEVEL: dict[str, Any] = {"enum": ["debug", "info", "warning", "error"]}
_RESOURCES = _object({"requests": _FREE, "limits": _FREE, "claims": {"type": "array"}})
_PDB = _object({"enabled": {"type": "boolean"}, "minAvailable": {"type": ["integer", "string"]}})
_PLACEMENT: dict[str, Any] = {
    "affinity": _FREE,
    "topologySpreadConstraints": _array(_FREE),
    "nodeSelector": _LABELS,
    "tolerations": _array(_FREE),
    "priorityClassName": _string(),
    "podAnnotations": _LABELS,
    "podLabels": _LABELS,
}


def policy_schema() -> dict[str, Any]:
    """The core's policy schema as a sub-schema (no ``$schema``/``$id`` of its own)."""
    sys.path.insert(0, str(CHART.parents[1]))
    from webhook.core.policy_schema import POLICY_SCHEMA

    return {k: v for k, v in POLICY_SCHEMA.items() if k not in ("$schema", "$id")}


def values_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12, which Helm 3.18+ understands) of values.yaml."""
    webhook = _object(
        {
            "replicas": {"type": "integer", "minimum": 1},
            "listenAddress": _string(minLength=1),
            "port": {"type": "integer", "minimum": 1024, "maximum": 65535},
            "timeoutSeconds": {"type": "integer", "minimum": 1, "maximum": 30},
            "gatewayAPI": {"type": "boolean"},
            "workers": {"type": "integer", "minimum": 1, "maximum": 64},
            "threads": {"type": "integer", "minimum": 1, "maximum": 256},
            "logLevel": _LOG_LEVEL,
            "logAllowed": {"type": "boolean"},
            "securityTeam": _object(
                {"users": _array(_string(minLength=1)), "groups": _array(_string(minLength=1))}
            ),
            "resources": _RESOURCES,
            "podDisruptionBudget": _PDB,
            **_PLACEMENT,
            "service": _object({"port": {"type": "integer", "minimum": 1, "maximum": 65535}}),
        }
    )
    controller = _object(
        {
            "enabled": {"type": "boolean"},
            "replicas": {"type": "integer", "minimum": 0},
            "resync": {"type": "number", "exclusiveMinimum": 0},
            "namespaceSelector": _string(),
            "listenAddress": _string(minLength=1),
            "port": {"type": "integer", "minimum": 1024, "maximum": 65535},
            "logLevel": _LOG_LEVEL,
            "resources": _RESOURCES,
            "podDisruptionBudget": _PDB,
            **_PLACEMENT,
        }
    )
    cert_manager = _object(
        {
            "enabled": {"type": "boolean"},
            "issuerRef": _object(
                {"name": _string(minLength=1), "kind": _string(), "group": _string()}
            ),
            "duration": _string(pattern=_DURATION),
            "renewBefore": _string(pattern=_DURATION),
        }
    )
    certs = _object(
        {
            "mode": {"enum": ["helm", "existing"]},
            "helm": _object(
                {
                    "validityDays": {"type": "integer", "minimum": 1, "maximum": 36500},
                    "renewBeforeDays": {"type": "integer", "minimum": 0},
                    "rotation": {"type": ["string", "integer"]},
                }
            ),
            "existing": _object({"secretName": _string(), "caBundle": _string()}),
        },
        # an existing Secret is useless without the CA the API server must trust
        **{
            "if": {"properties": {"mode": {"const": "existing"}}, "required": ["mode"]},
            "then": {
                "properties": {
                    "existing": {
                        "required": ["secretName", "caBundle"],
                        "properties": {
                            "secretName": _string(minLength=1),
                            "caBundle": _string(pattern="-----BEGIN CERTIFICATE-----"),
                        },
                    }
                }
            },
        },
    )
    metrics = _object(
        {
            "serviceMonitor": _object(
                {
                    "enabled": {"type": "boolean"},
                    "interval": _string(pattern=_DURATION),
                    "scrapeTimeout": _string(pattern=_DURATION),
                    "labels": _LABELS,
                    "insecureSkipVerify": {"type": "boolean"},
                }
            ),
            "grafanaDashboard": _object(
                {
                    "enabled": {"type": "boolean"},
                    "namespace": _string(pattern=r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)?$"),
                    "labels": _LABELS,
                    "annotations": _LABELS,
                }
            ),
        }
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "egress-guard chart values",
        "type": "object",
        "additionalProperties": False,
        "required": ["image", "policyConfigMap", "webhook", "certManager", "certs"],
        "properties": {
            "global": _FREE,
            "nameOverride": _string(maxLength=40),
            "fullnameOverride": _string(maxLength=52),
            "image": _object(
                {
                    "repository": _string(minLength=1),
                    "tag": _string(),
                    "digest": _string(pattern=r"^(|sha256:[0-9a-f]{64})$"),
                    "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                },
                required=["repository"],
            ),
            "imagePullSecrets": _array(_object({"name": _string(minLength=1)}, required=["name"])),
            "clusterDomain": _string(minLength=1),
            "excludedNamespaces": _array(_string(pattern=_DNS_LABEL), uniqueItems=True),
            "policy": policy_schema(),
            "policyConfigMap": _object({"create": {"type": "boolean"}, "name": _string()}),
            "serviceAccount": _object({"annotations": _LABELS}),
            "rbac": _object({"create": {"type": "boolean"}}),
            "podSecurityContext": _FREE,
            "securityContext": _FREE,
            "webhook": webhook,
            "controller": controller,
            "certManager": cert_manager,
            "certs": certs,
            "metrics": metrics,
        },
    }


def schema_text() -> str:
    """values.schema.json's expected content."""
    return json.dumps(values_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    SCHEMA_FILE.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {SCHEMA_FILE.relative_to(CHART.parent.parent)}")
