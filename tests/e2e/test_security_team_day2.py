"""The security team's day two, end to end: a webhook, a controller and the report CRD.

On a control plane of this module's own (the policy ConfigMap is edited freely here):
- a narrowing edit of the policy ConfigMap is admitted with ``kubectl`` warnings naming the
  existing ServiceEntry it strands; the controller's audit lists it in an OpenReports ``Report``
  within 5 s and counts it in its gauge; fixing the object clears both;
- an invalid policy is refused at apply, with its field paths, and the one in force stays;
- an exception with a short expiry admits a ServiceEntry and gets routing, then at its expiry
  instant admission denies, the routing is pruned and the audit flags the object;
- deleting the policy ConfigMap is refused to who is not the security team;
- ``egress-guard audit`` judges the same cluster and exits 1 on the breach.

The Report CRD is the upstream one, fetched by pinned module version with ``go mod download``
(checked against the Go checksum database), as ``tools/build.sh`` fetches the Istio CRDs.  The
policy ConfigMap's webhook is registered here from the core ``registration`` (the chart carries
the same), and the webhook's ServiceAccount gets the chart's read rules for governed kinds.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import (
    LOOPBACK,
    POLICY_CONFIGMAP,
    WEBHOOK_ACCOUNT,
    WEBHOOK_NAMESPACE,
    ControlPlane,
    Kubectl,
    Tools,
    Webhook,
    create_namespace,
    egress_guard_command,
    existing_cluster_kubeconfig,
    free_port,
    wait_for_admission_sync,
)
from webhook.core.policy_admission import PolicyConfigMap, registration
from webhook.core.policy_parsing import parse_policy
from webhook.kube import rbac
from webhook.kube.client import load_api_client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

OPENREPORTS_MODULE = "github.com/openreports/reports-api"
OPENREPORTS_VERSION = "v0.2.1"
OPENREPORTS_CRD = "config/crd/openreports.io_reports.yaml"
EGRESS = "egress"
REPORT_WITHIN_S = 5.0
# the controller's periodic pass; fixes (no new revision) are seen by it
AUDIT_INTERVAL_S = 2.0
GITHUB_ENTRY = "gh"


def openreports_crd(workdir: Path) -> Path:
    """The upstream Report CRD of the pinned module version, from the Go module cache."""
    module = workdir / "openreports-module"
    module.mkdir(exist_ok=True)
    (module / "go.mod").write_text("module egress-guard.e2e/openreports\n\ngo 1.24\n")
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    found = subprocess.run(
        ["go", "mod", "download", "-json", f"{OPENREPORTS_MODULE}@{OPENREPORTS_VERSION}"],
        cwd=module,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    info = json.loads(found.stdout or "{}")
    if "Dir" not in info:
        pytest.skip(f"cannot fetch {OPENREPORTS_MODULE}@{OPENREPORTS_VERSION}: {found.stderr}")
    return Path(info["Dir"]) / OPENREPORTS_CRD


def policy_text(team: str, *, github: bool, exception_until: datetime | None = None) -> str:
    """Two external services; ``team`` may reach httpbin, and github when told."""
    allowed = ["httpbin", "github"] if github else ["httpbin"]
    policy: dict[str, Any] = {
        "egress": {"namespace": EGRESS},
        "externalServices": [
            {
                "name": "github",
                "hosts": ["api.github.com"],
                "ports": [{"number": 443, "protocol": "TLS"}],
            },
            {
                "name": "httpbin",
                "hosts": ["httpbin.org"],
                "ports": [{"number": 443, "protocol": "TLS"}],
            },
        ],
        "allow": [{"name": f"{team}-out", "from": {"namespace": team}, "to": allowed}],
    }
    if exception_until is not None:
        policy["exceptions"] = [
            {
                "name": "short-github",
                "namespaces": [team],
                "services": ["github"],
                "owner": "alice",
                "ticket": "SEC-42",
                "expires": exception_until.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        ]
    return yaml.safe_dump(policy, sort_keys=False)


def configmap(text: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": POLICY_CONFIGMAP, "namespace": WEBHOOK_NAMESPACE},
        "data": {"policy.yaml": text},
    }


def service_entry(namespace: str, host: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": GITHUB_ENTRY, "namespace": namespace},
        "spec": {
            "hosts": [host],
            "exportTo": ["."],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": "DNS",
        },
    }


def kubectl_apply(kubectl: Kubectl, obj: dict[str, Any], *extra: str) -> Any:
    """``kubectl apply -f -`` as a person types it: warnings and refusals on stderr."""
    return kubectl("apply", "-f", "-", *extra, input=json.dumps(obj))


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> tuple[Any, float]:
    started = time.monotonic()
    while True:
        value = condition()
        if value:
            return value, time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def _get_json(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except OSError:
        return 0, ""


@dataclass
class World:
    plane: ControlPlane
    webhook: Webhook
    controller: subprocess.Popen[bytes]
    controller_log: Path
    probes: str
    custom: client.CustomObjectsApi

    @property
    def kubectl(self) -> Kubectl:
        return self.plane.kubectl

    def put_policy(self, text: str) -> Any:
        """Applies the policy ConfigMap; on success waits until webhook and controller use it."""
        result = kubectl_apply(self.kubectl, configmap(text))
        if result.returncode == 0:
            revision = parse_policy(text).revision
            wait_until(lambda: self.revision("webhook") == revision, 20, "the webhook's policy")
            wait_until(
                lambda: self.revision("controller") == revision, 20, "the controller's policy"
            )
        return result

    def revision(self, who: str) -> str:
        if who == "webhook":
            ca = self.webhook.workdir / "pki" / "webhook-ca.crt"
            context = ssl.create_default_context(cafile=str(ca))
            try:
                with urllib.request.urlopen(
                    f"{self.webhook.base_url}/readyz", timeout=5, context=context
                ) as response:
                    body = response.read().decode()
            except OSError:
                return ""
        else:
            _, body = _get_json(f"{self.probes}/readyz")
        try:
            return str(json.loads(body).get("policy_revision") or "")
        except ValueError:
            return ""

    def report_names(self, namespace: str) -> set[str]:
        """Objects the egress-guard Report of ``namespace`` lists as failing."""
        items = self.custom.list_namespaced_custom_object(
            "openreports.io", "v1alpha1", namespace, "reports"
        )["items"]
        return {
            resource.get("name", "")
            for report in items
            for result in report.get("results") or ()
            if result.get("result") == "fail"
            for resource in result.get("resources") or ()
        }

    def gauge(self, namespace: str) -> float:
        _, text = _get_json(f"{self.probes}/metrics")
        total = 0.0
        for family in text_string_to_metric_families(text):
            if family.name != "egress_guard_audit_violations":
                continue
            for sample in family.samples:
                if sample.labels.get("namespace") == namespace:
                    total += sample.value
        return total


@pytest.fixture(scope="module")
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    if existing_cluster_kubeconfig() is not None:
        pytest.skip("needs a harness control plane of its own")
    tools: Tools = request.getfixturevalue("e2e_tools")
    workdir = tmp_path_factory.mktemp("day2")
    crd = openreports_crd(workdir)
    plane = ControlPlane(workdir / "control-plane", tools)
    plane.start()
    hook: Webhook | None = None
    controller: subprocess.Popen[bytes] | None = None
    try:
        kubectl = plane.kubectl
        kubectl("apply", "--server-side", "-f", str(crd), check=True)
        plane.wait_for_crds(["reports.openreports.io"])
        hook = Webhook(plane, workdir / "webhook")
        hook.start()
        _grant_governed_reads(kubectl)
        _register_policy_webhook(kubectl, hook)
        kubectl("create", "namespace", EGRESS, check=True)
        port = free_port()
        log_path = workdir / "controller.log"
        with log_path.open("wb") as log:
            controller = subprocess.Popen(
                [
                    *egress_guard_command(),
                    "controller",
                    f"--kubeconfig={plane.kubeconfig}",
                    f"--policy-configmap={WEBHOOK_NAMESPACE}/{POLICY_CONFIGMAP}",
                    f"--lease-namespace={WEBHOOK_NAMESPACE}",
                    "--identity=day2",
                    f"--metrics-bind={LOOPBACK}:{port}",
                    f"--audit-interval={AUDIT_INTERVAL_S}",
                    "--resync=30",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        world = World(
            plane,
            hook,
            controller,
            log_path,
            f"http://{LOOPBACK}:{port}",
            client.CustomObjectsApi(load_api_client(str(plane.kubeconfig))),
        )
        wait_until(
            lambda: _get_json(f"{world.probes}/readyz")[0] == 200, 60, "the controller to lead"
        )
        yield world
    finally:
        if controller is not None:
            controller.terminate()
            try:
                controller.wait(timeout=15)
            except subprocess.TimeoutExpired:
                controller.kill()
                controller.wait()
            print(f"--- controller log ---\n{(workdir / 'controller.log').read_text()[-4000:]}")
        if hook is not None:
            plane.kubectl("delete", "validatingwebhookconfiguration", "egress-guard-e2e-policy")
            hook.stop()
        plane.stop()


def _grant_governed_reads(kubectl: Kubectl) -> None:
    """The chart's webhook rules (every governed kind), bound to the harness ServiceAccount."""
    name = "egress-guard-e2e-governed-read"
    kubectl.apply(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": name},
                "rules": rbac.webhook_cluster_rules(),
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": name,
                },
                "subjects": [
                    {
                        "kind": "ServiceAccount",
                        "name": WEBHOOK_ACCOUNT.name,
                        "namespace": WEBHOOK_NAMESPACE,
                    }
                ],
            },
        ]
    )


def _register_policy_webhook(kubectl: Kubectl, hook: Webhook) -> None:
    assert hook.ca is not None
    kubectl.apply(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "egress-guard-e2e-policy"},
            "webhooks": [
                {
                    **registration(PolicyConfigMap(WEBHOOK_NAMESPACE, POLICY_CONFIGMAP)),
                    "clientConfig": {
                        "url": f"{hook.base_url}/validate",
                        "caBundle": base64.b64encode(hook.ca.cert_pem).decode(),
                    },
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Fail",
                    "matchPolicy": "Equivalent",
                }
            ],
        }
    )
    wait_for_admission_sync(kubectl)


def _team(world: World) -> str:
    return create_namespace(world.kubectl, f"team-{secrets.token_hex(2)}")


def test_a_narrowing_edit_warns_at_apply_and_the_report_lists_the_object_until_fixed(
    world: World,
) -> None:
    team = _team(world)
    assert world.put_policy(policy_text(team, github=True)).returncode == 0
    created = kubectl_apply(world.kubectl, service_entry(team, "api.github.com"))
    assert created.returncode == 0, created.stderr

    applying = time.monotonic()
    narrowed = world.put_policy(policy_text(team, github=False))
    assert narrowed.returncode == 0, narrowed.stderr
    assert "leaves 1 existing object(s) in breach" in narrowed.stderr
    assert f"ServiceEntry {team}/{GITHUB_ENTRY}" in narrowed.stderr
    assert f"{team}-out" in narrowed.stderr or "loses access to api.github.com" in narrowed.stderr

    _, took = wait_until(
        lambda: GITHUB_ENTRY in world.report_names(team), REPORT_WITHIN_S, "the Report"
    )
    print(
        f"\n[measure] breach listed in the Report {took:.2f}s after both loaded the policy, "
        f"{time.monotonic() - applying:.2f}s after kubectl apply started"
    )
    wait_until(lambda: world.gauge(team) >= 1, 10, "the audit gauge")

    fixed = kubectl_apply(world.kubectl, service_entry(team, "httpbin.org"))
    assert fixed.returncode == 0, fixed.stderr
    wait_until(lambda: not world.report_names(team), 20, "the Report to clear")
    wait_until(lambda: world.gauge(team) == 0, 20, "the gauge to clear")


def test_an_invalid_policy_is_refused_at_apply_with_field_paths(world: World) -> None:
    team = _team(world)
    good = policy_text(team, github=True)
    assert world.put_policy(good).returncode == 0
    broken = "egress: {namespace: 7}\nexternalServices: [{name: x}]\nallow: 3\n"
    refused = kubectl_apply(world.kubectl, configmap(broken))
    assert refused.returncode != 0
    assert "is not a valid egress policy" in refused.stderr
    assert refused.stderr.count("data[policy.yaml]") >= 2, refused.stderr
    assert world.revision("webhook") == parse_policy(good).revision


def test_deleting_the_policy_is_refused_to_who_is_not_the_security_team(world: World) -> None:
    # the harness webhook names no security team, so the cluster admin is refused too
    refused = world.kubectl(
        "delete", "configmap", POLICY_CONFIGMAP, "-n", WEBHOOK_NAMESPACE, "--dry-run=server"
    )
    assert refused.returncode != 0
    assert "only the security team may delete it" in refused.stderr


def test_a_short_exception_grants_then_ends_at_its_expiry_instant(world: World) -> None:
    team = _team(world)
    expires = (datetime.now(UTC) + timedelta(seconds=40)).replace(microsecond=0)
    applied = world.put_policy(policy_text(team, github=False, exception_until=expires))
    assert applied.returncode == 0, applied.stderr
    assert "short-github" in applied.stderr  # ends within 7 days

    entry = service_entry(team, "api.github.com")
    admitted = kubectl_apply(world.kubectl, entry)
    assert admitted.returncode == 0, admitted.stderr
    assert "allowed only by exception" in admitted.stderr
    route = ("virtualservices", team, "egress-guard-github")
    wait_until(lambda: _exists(world, *route), 20, "the exception's routing")
    assert time.time() < expires.timestamp(), "the machine is too slow for this expiry"

    time.sleep(max(expires.timestamp() - time.time(), 0) + 0.2)
    # a new object: kubectl sends nothing for an unchanged one
    another = {**entry, "metadata": {**entry["metadata"], "name": "gh-again"}}
    denied = kubectl_apply(world.kubectl, another, "--dry-run=server")
    assert denied.returncode != 0
    assert "api.github.com" in denied.stderr

    _, pruned = wait_until(lambda: not _exists(world, *route), 10, "the routing to be pruned")
    _, flagged = wait_until(lambda: GITHUB_ENTRY in world.report_names(team), 10, "the audit")
    since = time.time() - expires.timestamp()
    print(
        f"\n[measure] pruned and flagged {since:.2f}s after the expiry instant "
        f"(routing {pruned:.2f}s, report {flagged:.2f}s after admission denied)"
    )

    audited = subprocess.run(
        [
            *egress_guard_command(),
            "audit",
            f"--kubeconfig={world.plane.kubeconfig}",
            f"--policy-configmap={WEBHOOK_NAMESPACE}/{POLICY_CONFIGMAP}",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert audited.returncode == 1, audited.stderr
    assert f"{team}" in audited.stdout and GITHUB_ENTRY in audited.stdout


def _exists(world: World, plural: str, namespace: str, name: str) -> bool:
    try:
        world.custom.get_namespaced_custom_object(
            "networking.istio.io", "v1", namespace, plural, name
        )
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_a_gzipped_policy_from_kubectl_create_is_enforced_and_a_corrupt_one_refused(
    world: World, tmp_path: Path
) -> None:
    import gzip

    team = _team(world)
    assert world.put_policy(policy_text(team, github=True)).returncode == 0
    narrowed = policy_text(team, github=False)
    gz = tmp_path / "policy.json.gz"
    gz.write_bytes(gzip.compress(json.dumps(yaml.safe_load(narrowed)).encode()))
    # as the docs say to ship a large allow list: kubectl puts the gzip file in binaryData
    made = world.kubectl(
        "create", "configmap", POLICY_CONFIGMAP, f"--namespace={WEBHOOK_NAMESPACE}",
        f"--from-file={gz}", "--dry-run=client", "-o", "json", check=True,
    )  # fmt: skip
    manifest = json.loads(made.stdout)
    assert set(manifest["binaryData"]) == {"policy.json.gz"} and "data" not in manifest
    replaced = world.kubectl("replace", "-f", "-", input=json.dumps(manifest))
    assert replaced.returncode == 0, replaced.stderr
    revision = parse_policy(narrowed).revision
    wait_until(lambda: world.revision("webhook") == revision, 20, "the webhook's policy")
    wait_until(lambda: world.revision("controller") == revision, 20, "the controller's policy")
    denied = kubectl_apply(world.kubectl, service_entry(team, "api.github.com"), "--dry-run=server")
    assert denied.returncode != 0 and "api.github.com" in denied.stderr

    manifest["binaryData"]["policy.json.gz"] = base64.b64encode(b"\x1f\x8bnot gzip").decode()
    refused = world.kubectl("replace", "-f", "-", input=json.dumps(manifest))
    assert refused.returncode != 0
    assert "binaryData[policy.json.gz]: not valid gzip" in refused.stderr, refused.stderr
    assert world.revision("webhook") == revision
    # back to the plain key for the tests after this one: replaced, since `kubectl apply` would
    # merge data[policy.yaml] beside binaryData[policy.json.gz], and two keys are refused
    plain = policy_text(team, github=True)
    both = kubectl_apply(world.kubectl, configmap(plain))
    assert both.returncode != 0 and "several policy keys" in both.stderr
    restored = world.kubectl("replace", "-f", "-", input=json.dumps(configmap(plain)))
    assert restored.returncode == 0, restored.stderr
    revision = parse_policy(plain).revision
    wait_until(lambda: world.revision("webhook") == revision, 20, "the webhook's policy")
