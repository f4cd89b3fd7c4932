"""The webhook and the controller run with exactly the chart's RBAC, and need every verb they use.

Why: RBAC mistakes show up only against a real API server, and only for the identity that
makes the call. A harness running the components as admin would hide both a verb the chart
forgot and a wildcard it should not grant. Here the API server itself says what each
ServiceAccount may do (``kubectl auth can-i --list``), its audit log says which calls the
components really made and whether RBAC allowed them, and taking one verb away shows the
component failing.

The module has a control plane of its own, with ``egress-guard serve`` and ``egress-guard
controller`` running as the chart's two ServiceAccounts, so the audit log holds their calls
and nobody else's.
"""

from __future__ import annotations

import http.client
import re
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import (
    CONTROLLER_ACCOUNT,
    LOOPBACK,
    POLICY_CONFIGMAP,
    WEBHOOK_NAMESPACE,
    AuditedCall,
    ControlPlane,
    Grant,
    Kubectl,
    ManagedProcess,
    ServiceAccount,
    Tools,
    Webhook,
    audited_calls,
    controller_grant,
    create_namespace,
    egress_guard_command,
    existing_cluster_kubeconfig,
    free_port,
    grant,
    issue_cert,
    new_ca,
    service_account_kubeconfig,
    webhook_grant,
    without,
)
from webhook.core.desired import DEFAULT_SIDECAR

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SELECTOR_KEY = "egress-guard.dev/e2e-rbac"
GOAL_TIMEOUT_S = 30.0
# how long a component without a verb is given to reach its goal anyway
GRACE_S = 3.0

Rules = list[dict[str, Any]]


def _resource_name(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def _pairs(rules: Rules) -> set[tuple[str, str]]:
    """(resource.group, verb) for every grant in ``rules``."""
    return {
        (_resource_name(group, resource), verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _covers(rules: Rules, call: AuditedCall) -> bool:
    return any(
        call.group in rule["apiGroups"]
        and call.resource in rule["resources"]
        and call.verb in rule["verbs"]
        for rule in rules
    )


def _rules_in(grant_: Grant, namespace: str) -> Rules:
    """The rules ``grant_`` gives in ``namespace`` ("" for cluster-scoped requests)."""
    if namespace == grant_.account.namespace:
        return [*grant_.cluster_rules, *grant_.namespace_rules]
    return grant_.cluster_rules


_CAN_I_ROW = re.compile(r"^(\S+)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]\s*$")


def _can_i_list(kubectl: Kubectl, account: ServiceAccount, namespace: str) -> set[tuple[str, str]]:
    """What the API server says ``account`` may do on resources in ``namespace``."""
    listing = kubectl(
        "auth", "can-i", "--list", f"--as={account.user}", f"--namespace={namespace}", check=True
    ).stdout
    pairs = set()
    for line in listing.splitlines()[1:]:
        row = _CAN_I_ROW.match(line)
        if row is None:
            continue  # non-resource URLs
        resource, _, _, verbs = row.groups()
        pairs.update((resource, verb) for verb in verbs.split())
    return pairs


# --- the module's control plane, with both components as their ServiceAccounts ----------------


@dataclass
class World:
    """The module's control plane, the webhook and a controller running as their accounts."""

    plane: ControlPlane
    webhook: Webhook
    controller: ManagedProcess
    controller_probes: int
    tag: str
    workdir: Path

    @property
    def kubectl(self) -> Kubectl:
        return self.plane.kubectl


def _controller(
    plane: ControlPlane,
    workdir: Path,
    account: ServiceAccount,
    tag: str,
    *,
    probes: int | None = None,
) -> ManagedProcess:
    kubeconfig = service_account_kubeconfig(plane, account, workdir / f"{account.name}.kubeconfig")
    argv = [
        *egress_guard_command(),
        "controller",
        f"--kubeconfig={kubeconfig}",
        f"--policy-configmap={WEBHOOK_NAMESPACE}/{POLICY_CONFIGMAP}",
        f"--lease-namespace={WEBHOOK_NAMESPACE}",
        f"--lease-name=lease-{tag}",
        f"--identity={account.name}",
        f"--namespace-selector={SELECTOR_KEY}={tag}",
        "--resync=30",
    ]
    if probes is not None:
        argv.append(f"--metrics-bind={LOOPBACK}:{probes}")
    process = ManagedProcess(name=account.name, argv=argv, log_path=workdir / f"{tag}.log")
    process.start()
    return process


def _sidecar_exists(kubectl: Kubectl, namespace: str) -> bool:
    return (
        kubectl("get", "sidecars.networking.istio.io", DEFAULT_SIDECAR, "-n", namespace).returncode
        == 0
    )


def _wait(what: str, condition: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)
    return time.monotonic() - started


def _http_status(port: int, path: str) -> int:
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=2)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        connection.close()


@pytest.fixture(scope="module")
def world(e2e_tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if existing_cluster_kubeconfig() is not None:
        pytest.skip("needs a harness control plane: its audit log and accounts of its own")
    workdir = tmp_path_factory.mktemp("rbac")
    plane = ControlPlane(workdir / "plane", e2e_tools)
    plane.start()
    webhook: Webhook | None = None
    controller: ManagedProcess | None = None
    try:
        # the webhook grants both accounts and applies the policy naming the controller
        webhook = Webhook(plane, workdir / "webhook")
        webhook.start()
        tag = "full"
        probes = free_port()
        controller = _controller(plane, workdir, CONTROLLER_ACCOUNT, tag, probes=probes)
        yield World(plane, webhook, controller, probes, tag, workdir)
    finally:
        if controller is not None:
            controller.stop()
        if webhook is not None:
            webhook.stop()
        plane.stop()


# --- tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grant_", "namespace"),
    [
        (webhook_grant(), WEBHOOK_NAMESPACE),
        (webhook_grant(), "default"),
        (controller_grant(), WEBHOOK_NAMESPACE),
        (controller_grant(), "default"),
    ],
    ids=["webhook-own-ns", "webhook-elsewhere", "controller-own-ns", "controller-elsewhere"],
)
def test_accounts_hold_exactly_the_rules_of_rbac_py(
    world: World, grant_: Grant, namespace: str
) -> None:
    kubectl = world.kubectl
    # what every ServiceAccount may do anyway (discovery, self reviews): not the chart's doing
    baseline = _can_i_list(kubectl, ServiceAccount(WEBHOOK_NAMESPACE, "nobody"), namespace)
    granted = _can_i_list(kubectl, grant_.account, namespace) - baseline
    assert granted == _pairs(_rules_in(grant_, namespace)) - baseline
    assert not [pair for pair in granted if "*" in pair], granted


def test_components_do_their_job_with_the_chart_rbac_alone(world: World) -> None:
    kubectl = world.kubectl
    namespace = create_namespace(kubectl, "rbac-tenant", labels={SELECTOR_KEY: world.tag})
    # the controller's write passes the webhook too: the policy names the controller's account
    took = _wait(
        "the controller's default Sidecar",
        lambda: _sidecar_exists(kubectl, namespace),
        GOAL_TIMEOUT_S,
    )
    print(f"[measure] namespace -> default Sidecar as the controller account: {took:.2f}s")
    _wait(
        "the controller's /readyz",
        lambda: _http_status(world.controller_probes, "/readyz") == 200,
        GOAL_TIMEOUT_S,
    )
    assert world.controller.alive(), world.controller.log_tail()


@pytest.mark.parametrize(
    "grant_", [webhook_grant(), controller_grant()], ids=["webhook", "controller"]
)
def test_every_call_the_components_made_was_allowed_by_their_rules(
    world: World, grant_: Grant
) -> None:
    # after the job above, or do it now when run alone
    namespace = create_namespace(world.kubectl, "rbac-audit", labels={SELECTOR_KEY: world.tag})
    _wait("the default Sidecar", lambda: _sidecar_exists(world.kubectl, namespace), GOAL_TIMEOUT_S)
    calls = audited_calls(world.plane.audit_log, users=[grant_.account.user])
    matrix = sorted({str(call) for call in calls})
    print(f"{grant_.account.user}:\n  " + "\n  ".join(matrix))
    assert calls, "the audit log holds no call of the account"
    assert [str(c) for c in calls if c.forbidden] == []
    uncovered = [str(c) for c in calls if not _covers(_rules_in(grant_, c.namespace), c)]
    assert uncovered == []
    # and the API server agrees, one can-i per distinct call
    for call in {(c.verb, _resource_name(c.group, c.resource), c.namespace) for c in calls}:
        verb, resource, scope = call
        args = [f"--namespace={scope}"] if scope else ["--all-namespaces"]
        answer = world.kubectl(
            "auth", "can-i", verb, resource, f"--as={grant_.account.user}", *args
        )
        assert answer.stdout.strip() == "yes", call


# --- one verb missing: the component fails --------------------------------------------------


@dataclass(frozen=True)
class Missing:
    """A verb taken from one of a component's rules, and how its absence must show."""

    component: str
    verb: str
    group: str
    resource: str
    namespaced: bool = False
    # the component must not reach its goal (a Sidecar written, /readyz 200) without it
    fatal: bool = True

    @property
    def id(self) -> str:
        return f"{self.component}-{self.verb}-{self.resource}"

    def grant(self) -> Grant:
        base = webhook_grant() if self.component == "webhook" else controller_grant()
        name = f"{base.account.name}-{self.verb}-{self.resource}".replace(".", "-")
        account = ServiceAccount(base.account.namespace, name)
        cluster, local = base.cluster_rules, base.namespace_rules
        if self.namespaced:
            local = without(local, self.verb, self.group, self.resource)
        else:
            cluster = without(cluster, self.verb, self.group, self.resource)
        return Grant(account, name, cluster, local)


MISSING = [
    Missing("controller", "create", "networking.istio.io", "sidecars"),
    Missing("controller", "patch", "networking.istio.io", "sidecars"),
    Missing("controller", "list", "", "namespaces"),
    Missing("controller", "watch", "", "namespaces", fatal=False),
    Missing("controller", "list", "", "configmaps", namespaced=True),
    Missing("controller", "create", "coordination.k8s.io", "leases", namespaced=True),
    Missing("webhook", "list", "", "configmaps", namespaced=True),
    Missing("webhook", "list", "networking.istio.io", "sidecars", fatal=False),
]


def _forbidden(world: World, account: ServiceAccount, missing: Missing) -> list[AuditedCall]:
    return [
        call
        for call in audited_calls(world.plane.audit_log, users=[account.user])
        if call.forbidden and call.resource == missing.resource and call.group == missing.group
    ]


def _start_webhook(world: World, account: ServiceAccount, tag: str) -> tuple[ManagedProcess, int]:
    """``egress-guard serve`` as ``account`` (unregistered: only its reads matter here)."""
    workdir = world.workdir / tag
    workdir.mkdir()
    ca = new_ca(f"{tag}-ca")
    ca.write(workdir / "ca.crt", workdir / "ca.key")
    issue_cert(ca, "webhook", ip_addresses=(LOOPBACK,), server=True).write(
        workdir / "tls.crt", workdir / "tls.key"
    )
    kubeconfig = service_account_kubeconfig(world.plane, account, workdir / "kubeconfig")
    port = free_port()
    process = ManagedProcess(
        name=account.name,
        argv=[
            *egress_guard_command(),
            "serve",
            f"--bind={LOOPBACK}:{port}",
            f"--cert-file={workdir / 'tls.crt'}",
            f"--key-file={workdir / 'tls.key'}",
            f"--policy-configmap={WEBHOOK_NAMESPACE}/{POLICY_CONFIGMAP}",
            f"--kubeconfig={kubeconfig}",
        ],
        log_path=workdir / "serve.log",
    )
    process.start()
    return process, port


def _webhook_ready(port: int, cafile: Path) -> bool:
    context = ssl.create_default_context(cafile=str(cafile))
    connection = http.client.HTTPSConnection(LOOPBACK, port, timeout=2, context=context)
    try:
        connection.request("GET", "/readyz")
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except OSError:
        return False
    finally:
        connection.close()


@pytest.mark.parametrize("missing", MISSING, ids=[m.id for m in MISSING])
def test_a_component_missing_a_verb_it_uses_fails(world: World, missing: Missing) -> None:
    variant = missing.grant()
    grant(world.kubectl, [variant])
    account = variant.account
    tag = missing.id.replace(".", "-")
    if missing.component == "controller":
        namespace = create_namespace(world.kubectl, "rbac-missing", labels={SELECTOR_KEY: tag})
        process = _controller(world.plane, world.workdir, account, tag)

        def reached() -> bool:
            return _sidecar_exists(world.kubectl, namespace)

    else:
        process, port = _start_webhook(world, account, tag)
        cafile = world.workdir / tag / "ca.crt"

        def reached() -> bool:
            return _webhook_ready(port, cafile)

    try:
        _wait(
            f"a forbidden {missing.verb} on {missing.resource} in the audit log",
            lambda: bool(_forbidden(world, account, missing)),
            GOAL_TIMEOUT_S,
        )
        print("\n".join(str(c) for c in _forbidden(world, account, missing)))
        if missing.fatal:
            deadline = time.monotonic() + GRACE_S
            while time.monotonic() < deadline:
                assert not reached(), f"{missing.id}: the component worked without the verb"
                time.sleep(0.2)
    finally:
        process.stop()


def test_every_missing_verb_case_names_a_verb_the_rules_grant() -> None:
    # a case whose verb the rules no longer grant would test nothing
    for missing in MISSING:
        variant = missing.grant()
        base = webhook_grant() if missing.component == "webhook" else controller_grant()
        kept = _pairs([*variant.cluster_rules, *variant.namespace_rules])
        granted = _pairs([*base.cluster_rules, *base.namespace_rules])
        assert kept < granted, missing
