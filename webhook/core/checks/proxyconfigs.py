"""ProxyConfig resources: the same rules as the ``proxy.istio.io/config`` pod annotation.

A ProxyConfig in a namespace (with or without a selector) reconfigures the proxies of its
workloads at injection: ``environmentVariables`` become the agent's environment (DNS capture,
bootstrap and discovery switches), ``image`` changes the proxy image type.  Only the fields that
tune nothing but the proxy's own performance may be set by tenants, as for the annotation.
"""

from __future__ import annotations

from collections.abc import Iterable

from webhook.core.checks import ClusterView, checks
from webhook.core.checks.common import Reader
from webhook.core.decisions import Violation
from webhook.core.policy import Policy
from webhook.core.reviews import Review

# ProxyConfig CRD fields (networking/v1beta1) that change nothing about where traffic goes
SAFE_FIELDS = frozenset({"selector", "concurrency"})


@checks("networking.istio.io", "ProxyConfig")
def check_proxy_config(review: Review, policy: Policy, view: ClusterView) -> Iterable[Violation]:
    """A ProxyConfig may select workloads and set concurrency, nothing else."""
    del policy, view
    if review.operation == "DELETE":
        return ()
    reader = Reader()
    spec = reader.spec(review.object)
    for key in sorted(str(k) for k in spec if k not in SAFE_FIELDS):
        reader.add(
            f"spec.{key}",
            "ProxyConfig fields beyond selector and concurrency can change the proxy's agent, "
            "bootstrap or image (environmentVariables reach the same switches as the "
            "proxy.istio.io/config annotation's proxyMetadata), and so let traffic skip the "
            "egress allow list; remove it",
        )
    return reader.violations
