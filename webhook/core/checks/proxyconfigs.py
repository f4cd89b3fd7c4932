"""ProxyConfig resources: the same rules as the ``proxy.istio.io/config`` pod annotation.

A ProxyConfig in a namespace (with or without a selector) reconfigures the proxies of its
workloads at injection: ``environmentVariables`` become the agent's environment (DNS capture,
bootstrap and discovery switches), ``image`` changes the proxy image type.  Only what tunes
nothing but the proxy's own lifecycle, performance and DNS handling may be set by tenants, as
for the annotation: the variables of ``SAFE_PROXY_METADATA`` and a variant of the mesh's image.
"""

from __future__ import annotations

from collections.abc import Iterable

from webhook.core.checks import ClusterView, checks
from webhook.core.checks.common import Reader
from webhook.core.checks.pods import (
    SAFE_METADATA_TEXT,
    unsafe_proxy_config,
    unsafe_proxy_environment,
)
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
    for key in sorted(spec, key=str):
        value = spec[key]
        if key in SAFE_FIELDS:
            continue
        if key == "environmentVariables":
            unsafe = unsafe_proxy_environment(value, "environmentVariables")
        elif key == "image":
            unsafe = unsafe_proxy_config({"image": value})
        else:
            unsafe = [str(key)]
        for field in unsafe:
            reader.add(
                f"spec.{field}",
                "ProxyConfig fields beyond selector and concurrency can change the proxy's "
                "agent, bootstrap or image (environmentVariables reach the same switches as "
                "the proxy.istio.io/config annotation's proxyMetadata), and so let traffic skip "
                f"the egress allow list; remove it (only {SAFE_METADATA_TEXT} "
                "may be set among environmentVariables, and image.imageType only to a variant "
                "of the mesh's proxy image)",
            )
    return reader.violations
