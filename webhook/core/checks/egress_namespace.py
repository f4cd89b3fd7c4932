"""The egress namespace is the security team's: everyone else is refused there, whatever the kind.

The egress gateways run there, and a gateway's proxy is the one place where traffic may leave the
mesh.  Per-kind checks cannot list every way to abuse that: a tenant AuthorizationPolicy or
Telemetry on the gateway, a ProxyConfig changing its proxy, a Deployment whose pods carry a
gateway's labels (and so its Service and config), a LoadBalancer or ExternalName Service.  So
the namespace is default-deny by author, before any kind's check: egress-guard's controller and
the policy's ``securityTeam`` identities write there (their writes still meet the kind checks),
and so do Kubernetes' own controllers, which create the gateways' ReplicaSets, Pods and
Endpoints.  A policy that names no security team keeps a narrower rule: the kinds with
egress-namespace rules of their own (ServiceEntry, Gateway, VirtualService, DestinationRule,
Gateway API routes and Gateways, Services, pods and their templates) are judged by them, every
other kind (AuthorizationPolicy, Telemetry, ProxyConfig, NetworkPolicy, Sidecar, Endpoints...)
is refused.
"""

from __future__ import annotations

from webhook.core.decisions import Violation
from webhook.core.policy import Policy
from webhook.core.reviews import Review

# Kubernetes' own controllers run as these; they only derive objects (ReplicaSets, Pods,
# Endpoints, Jobs) from objects someone allowed already wrote, and still meet the kind checks.
PLATFORM_USER_PREFIX = "system:serviceaccount:kube-system:"
PLATFORM_USERS = frozenset({"system:kube-controller-manager", "system:kube-scheduler"})
PLATFORM_GROUPS = frozenset({"system:masters"})

# kinds whose checks hold egress-namespace rules of their own (the gateways' routes, their
# pods, the Services naming them): judged by those rules when the policy names no team
EGRESS_RULED_KINDS = frozenset(
    {
        ("networking.istio.io", "ServiceEntry"),
        ("networking.istio.io", "Gateway"),
        ("networking.istio.io", "VirtualService"),
        ("networking.istio.io", "DestinationRule"),
        ("gateway.networking.k8s.io", "Gateway"),
        ("gateway.networking.k8s.io", "HTTPRoute"),
        ("gateway.networking.k8s.io", "GRPCRoute"),
        ("gateway.networking.k8s.io", "TLSRoute"),
        ("gateway.networking.k8s.io", "TCPRoute"),
        ("gateway.networking.k8s.io", "UDPRoute"),
        ("", "Service"),
        ("", "Pod"),
        ("", "ReplicationController"),
        ("apps", "Deployment"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("apps", "ReplicaSet"),
        ("batch", "Job"),
        ("batch", "CronJob"),
    }
)


def is_platform(review: Review) -> bool:
    """Kubernetes' own controllers, or a cluster administrator."""
    return (
        review.username.startswith(PLATFORM_USER_PREFIX)
        or review.username in PLATFORM_USERS
        or bool(PLATFORM_GROUPS.intersection(review.groups))
    )


def egress_namespace_violation(review: Review, policy: Policy, namespace: str) -> Violation | None:
    """Why a write in the egress namespace is refused by author; None to go on to its check."""
    if not policy.is_egress_namespace(namespace):
        return None
    if review.group == "" and review.kind == "Namespace":
        # the namespace object itself: its labels are judged by the Namespace check
        return None
    if is_platform(review) or policy.is_security_team(review.username, review.groups):
        return None
    if not policy.has_security_team and (review.group, review.kind) in EGRESS_RULED_KINDS:
        return None
    owners = "egress-guard's controller and the security team"
    if not policy.has_security_team:
        owners += " (the policy names none: set securityTeam.users or securityTeam.groups)"
    return Violation(
        "",
        f"namespace {namespace} holds the egress gateways, the only place where traffic may "
        f"leave the mesh; only {owners} write there, and {review.username or 'this user'} is "
        f"not one of them; {review.kind} objects there change what leaves the mesh: ask the "
        "security team or the platform team",
    )
