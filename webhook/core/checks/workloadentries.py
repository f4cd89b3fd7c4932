"""WorkloadEntry and WorkloadGroup: endpoints that ServiceEntries select by label.

A tenant ServiceEntry for a cluster-looking name can select WorkloadEntries whose ``address`` is any
IP or DNS name (docs/istio-semantics.md#workloadentry, trap 1): the address is where traffic really
goes, so it must be internal or allowed directly to the namespace, and no address of the egress
namespace (``egress_addresses``).
"""

from __future__ import annotations

from collections.abc import Iterable

from webhook.core.checks import ClusterView, checks
from webhook.core.checks.common import UNIX_PREFIX, Reader, destination_problem
from webhook.core.checks.egress_addresses import egress_addresses
from webhook.core.decisions import Violation
from webhook.core.hosts import is_ip, normalize
from webhook.core.policy import Policy
from webhook.core.reviews import Review


@checks("networking.istio.io", "WorkloadEntry", "WorkloadGroup")
def check_workload_entry(review: Review, policy: Policy, view: ClusterView) -> Iterable[Violation]:
    """The address of a WorkloadEntry (or WorkloadGroup template) must be an allowed place."""
    if review.operation == "DELETE":
        return ()
    reader = Reader()
    namespace = review.namespace
    if policy.is_egress_namespace(namespace):
        reader.add(
            "",
            f"{review.kind}s in the egress namespace {namespace} would add endpoints to the "
            "policy's services; ask the platform team",
        )
        return reader.violations
    spec = reader.spec(review.object)
    path = "spec"
    if review.kind == "WorkloadGroup":
        path = "spec.template"
        spec = reader.mapping(spec.get("template"), path)
    address = reader.string(spec.get("address"), f"{path}.address")
    held = egress_addresses(policy, view, namespace) if address else None
    problem = held.problem(address) if held is not None and address else None
    if problem:
        # the egress gateway itself: the most telling reason for such an address
        reader.add(f"{path}.address", problem)
    elif address and _outside(policy, address):
        reader.add(
            f"{path}.address",
            f"{address!r} is outside the cluster, and a WorkloadEntry is dialled on whatever "
            "port the Service or ServiceEntry selecting it names, which this check cannot "
            "bound; declare the destination as ServiceEntry endpoints (their ports are checked)",
        )
    elif address:
        destination_problem(
            policy,
            reader,
            address,
            f"{path}.address",
            policy.allowed_directly(namespace),
            f"namespace {namespace} (endpoints bypass the egress gateway)",
        )
    return reader.violations


def _outside(policy: Policy, address: str) -> bool:
    """An address that leaves the cluster but that the policy would otherwise let through."""
    host = normalize(address)
    if address.startswith(UNIX_PREFIX):
        return False
    if is_ip(host):
        return not policy.is_internal_address(host) and any(
            policy.address_allowed(host, (name,)) for name in policy.services
        )
    return not policy.is_internal(host) and bool(policy.services_covering(host))
