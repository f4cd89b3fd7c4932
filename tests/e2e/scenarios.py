"""What the e2e scenario modules share: kubectl as a user runs it, verdicts, policy swaps.

Why a module of its own: the scenario tests (``test_scenario_*.py``) read as user stories, "apply
this, expect that message", so the mechanics live here: running kubectl and keeping what it
printed (every command and its output is printed, so ``pytest -rA`` shows the real messages a
developer would see), asserting a denial names what it must, idempotent literal namespaces, and
swapping the policy ConfigMap under a running webhook and knowing when the swap took effect.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.harness import (
    FIELD_MANAGER,
    LOOPBACK,
    POLICY_CONFIGMAP,
    POLICY_KEY,
    REPO_ROOT,
    WEBHOOK_NAMESPACE,
    Kubectl,
    Webhook,
    policy_manifest,
)
from webhook.core.policy_parsing import parse_policy

POLICIES = REPO_ROOT / "policies"
BANZAI_POLICY = POLICIES / "banzai-demo.yaml"
ISTIO_FIREWALL_POLICY = POLICIES / "istio-egress-firewall.yaml"

Manifest = Mapping[str, Any]

# The demo's workloads (resources/workloads/app-{a,b}-workload.yaml), in short form.
WORKLOADS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: app-a, namespace: test-app, labels: {k8s-app: app-a}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: app-a}}
  template:
    metadata: {labels: {k8s-app: app-a}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - {name: echo-service, image: registry.k8s.io/echoserver:1.10, ports: [{containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: app-a, namespace: test-app, labels: {k8s-app: app-a}}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}]
  selector: {k8s-app: app-a}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app-b, namespace: test-app, labels: {k8s-app: app-b}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: app-b}}
  template:
    metadata: {labels: {k8s-app: app-b}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - {name: echo-service, image: registry.k8s.io/echoserver:1.10, ports: [{containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: app-b, namespace: test-app, labels: {k8s-app: app-b}}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}]
  selector: {k8s-app: app-b}
"""

DEFAULT_DENY_SIDECAR = "test-app-restrict"
# fully qualified: "gateways" alone would name the Gateway API kind
ISTIO_KINDS = ",".join(
    f"{k}.networking.istio.io"
    for k in ("sidecars", "serviceentries", "virtualservices", "gateways")
)

# The breaches the issue lists, each with what the refusal must name: field, host, source.
BREACHES: dict[str, tuple[str, tuple[str, ...]]] = {
    "service-entry-for-a-host-outside-the-list": (
        """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: pastebin, namespace: test-app}
spec:
  hosts: [pastebin.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
  exportTo: ["."]
""",
        ("ServiceEntry test-app/pastebin", "spec.hosts[0]", "pastebin.com", "namespace test-app"),
    ),
    "sidecar-with-allow-any": (
        """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: app-a-open, namespace: test-app}
spec:
  egress: [{hosts: ["./*", external/httpbin.org, external/github.com]}]
  workloadSelector: {labels: {k8s-app: app-a}}
  outboundTrafficPolicy: {mode: ALLOW_ANY}
""",
        ("Sidecar test-app/app-a-open", "spec.outboundTrafficPolicy.mode", "ALLOW_ANY"),
    ),
    "sidecar-for-app-b-importing-httpbin": (
        """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: app-b-wider, namespace: test-app}
spec:
  egress: [{hosts: ["./*", external/google.com, external/httpbin.org]}]
  workloadSelector: {labels: {k8s-app: app-b}}
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
""",
        (
            "spec.egress[0].hosts[2]",
            "external/httpbin.org",
            "k8s-app=app-b",
            "google (google.com, www.google.com)",
        ),
    ),
    "virtual-service-sending-httpbin-straight-out": (
        """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app-a-httpbin-direct, namespace: test-app}
spec:
  hosts: [httpbin.org]
  http:
  - match: [{port: 80, sourceLabels: {k8s-app: app-a}}]
    route: [{destination: {host: httpbin.org, port: {number: 80}}}]
""",
        (
            "spec.http[0].route[0].destination.host",
            "httpbin.org",
            "k8s-app=app-a",
            "egress-httpbin.external.svc.cluster.local",
        ),
    ),
}


def documents(text: str) -> list[dict[str, Any]]:
    """The objects of a multi-document YAML text."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def as_yaml(objects: Manifest | Sequence[Manifest]) -> str:
    """One or more objects as the multi-document YAML a user would pipe to kubectl."""
    items = [objects] if isinstance(objects, Mapping) else list(objects)
    return yaml.safe_dump_all([dict(o) for o in items], sort_keys=False)


@dataclass(frozen=True)
class Outcome:
    """What one kubectl invocation answered."""

    command: str
    returncode: int
    stdout: str
    stderr: str

    @property
    def admitted(self) -> bool:
        return self.returncode == 0

    @property
    def warnings(self) -> list[str]:
        """The ``Warning: ...`` lines kubectl printed (admission warnings among them)."""
        return [line for line in self.stderr.splitlines() if line.startswith("Warning:")]

    @property
    def errors(self) -> str:
        """stderr without the warning lines: the refusal message, if any."""
        return "\n".join(
            line for line in self.stderr.splitlines() if not line.startswith("Warning:")
        )


def run(kubectl: Kubectl, *args: str, input: str | None = None) -> Outcome:
    """Runs kubectl, prints the command and everything it said, returns the outcome."""
    result = kubectl(*args, input=input)
    outcome = Outcome(f"kubectl {' '.join(args)}", result.returncode, result.stdout, result.stderr)
    print(f"$ {outcome.command}  -> exit {outcome.returncode}")
    for stream in (result.stdout.strip(), result.stderr.strip()):
        if stream:
            print("  " + stream.replace("\n", "\n  "))
    return outcome


def apply(
    kubectl: Kubectl, objects: Manifest | Sequence[Manifest], *, dry_run: bool = False
) -> Outcome:
    """``kubectl apply -f -`` (client-side, as a developer types it), optionally server dry-run."""
    args = ["apply", "-f", "-"]
    if dry_run:
        args.append("--dry-run=server")
    return run(kubectl, *args, input=as_yaml(objects))


def remove(kubectl: Kubectl, objects: Manifest | Sequence[Manifest]) -> None:
    """Deletes objects if they exist (a test's cleanup; the webhook may refuse, then it stays)."""
    kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", input=as_yaml(objects))


def assert_denied(outcome: Outcome, *needles: str) -> None:
    """The request was refused by egress-guard's webhook, with every needle in the message."""
    assert not outcome.admitted, f"{outcome.command} was admitted:\n{outcome.stdout}"
    message = outcome.errors
    assert "admission webhook" in message, message
    assert "egress-guard.dev" in message, message
    assert "denied the request" in message, message
    # a refusal because the webhook could not be called proves nothing about the policy
    assert "failed calling webhook" not in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} missing from:\n{message}"


def assert_admitted(outcome: Outcome) -> None:
    """The request went through."""
    assert outcome.admitted, f"{outcome.command} was refused:\n{outcome.stderr}"


def ensure_namespace(kubectl: Kubectl, name: str) -> None:
    """Creates a namespace with a literal name unless it exists (never deleted: no controller
    finishes namespace deletion in the harness)."""
    result = kubectl("create", "namespace", name)
    if result.returncode != 0 and "AlreadyExists" not in result.stderr:
        raise AssertionError(f"kubectl create namespace {name} failed:\n{result.stderr}")


def policy_configmap(
    path: Path,
    *,
    mode: str | None = None,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """A policy ConfigMap manifest from ``policies/``, its ``mode`` replaced or its policy
    document edited in place by ``edit``; like the chart's, it lists the controller's account
    in ``controller.users``."""
    manifest = policy_manifest(path)
    document = yaml.safe_load(manifest["data"][POLICY_KEY])
    if mode is not None:
        document["mode"] = mode
    if edit is not None:
        edit(document)
    manifest["data"][POLICY_KEY] = yaml.safe_dump(document, sort_keys=False)
    return manifest


class PolicyControl:
    """Edits the policy ConfigMap a running egress-guard watches, and observes the webhook."""

    def __init__(self, hook: Webhook) -> None:
        self.hook = hook
        self.kubectl = hook.plane.kubectl

    def _get(self, path: str) -> tuple[int, bytes]:
        context = ssl.create_default_context(
            cafile=str(self.hook.workdir / "pki" / "webhook-ca.crt")
        )
        connection = http.client.HTTPSConnection(
            LOOPBACK, self.hook.port or 0, timeout=5, context=context
        )
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def revision(self) -> str:
        """The policy revision the webhook decides with right now ("" when it has none)."""
        status, body = self._get("/readyz")
        return str(json.loads(body).get("policy_revision", "")) if status == 200 else ""

    def reload_failures(self) -> float:
        """How many policy updates the webhook has rejected so far."""
        _, body = self._get("/metrics")
        for line in body.decode().splitlines():
            if line.startswith('egress_guard_policy_reloads_total{result="failure"}'):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError("egress_guard_policy_reloads_total missing from /metrics")

    def write(self, manifest: Manifest) -> None:
        """Server-side applies a policy ConfigMap (any content, valid or not)."""
        self.kubectl(
            "apply",
            "--server-side",
            f"--field-manager={FIELD_MANAGER}",
            "--force-conflicts",
            "-f",
            "-",
            input=json.dumps(manifest),
            check=True,
        )

    def write_text(self, policy_text: str) -> None:
        """Replaces the policy document in the webhook's ConfigMap."""
        self.write(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": POLICY_CONFIGMAP, "namespace": WEBHOOK_NAMESPACE},
                "data": {POLICY_KEY: policy_text},
            }
        )

    def use(self, manifest: Manifest, *, timeout: float = 10.0) -> str:
        """Puts a valid policy in force and waits until the webhook decides with it."""
        expected = parse_policy(manifest["data"][POLICY_KEY]).revision
        if self.revision() != expected:
            self.write(manifest)
            wait_for(lambda: self.revision() == expected, timeout, f"policy {expected} in force")
        return expected


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> float:
    """Polls until ``condition()`` is truthy; returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started
