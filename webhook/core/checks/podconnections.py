"""``kubectl exec`` and ``kubectl attach`` into the proxy: a shell that iptables never captures.

The sidecar runs as UID 1337, which the capture rules let through so the proxy's own upstream
connections do not loop; its image ships curl.  A shell in the ``istio-proxy`` container can
therefore reach any address, past the allow list.  The API server sends these as CONNECT on
``pods/exec`` and ``pods/attach``, with a ``PodExecOptions``/``PodAttachOptions`` naming the
container.  kubectl always names one (it resolves the ``kubectl.kubernetes.io/default-container``
annotation, else the first container, before calling); only a raw API call may leave it out, and
the API server then picks the pod's only container, which for a gateway pod is the proxy.  So a
request naming no container is refused too, with the fix.
"""

from __future__ import annotations

from collections.abc import Iterable

from webhook.core.checks import ClusterView, checks
from webhook.core.checks.common import Reader
from webhook.core.checks.injection import INJECTED_CONTAINERS
from webhook.core.decisions import Violation
from webhook.core.policy import Policy
from webhook.core.reviews import Review

CONNECT = ("CONNECT",)


@checks("", "PodExecOptions", resource="pods/exec", operations=CONNECT)
@checks("", "PodAttachOptions", resource="pods/attach", operations=CONNECT)
def check_pod_connection(review: Review, policy: Policy, view: ClusterView) -> Iterable[Violation]:
    """Exec and attach may not enter a container the Istio injector added."""
    del policy, view
    reader = Reader()
    if review.object is None:
        reader.add("", "the request carries no exec/attach options to check")
        return reader.violations
    verb = "exec" if review.kind == "PodExecOptions" else "attach"
    container = reader.string(review.object.get("container"), "container")
    if reader.violations:
        return reader.violations
    if not container:
        reader.add(
            "container",
            f"names no container, so the API server picks the pod's only one, which may be the "
            f"Istio proxy; name the container (kubectl {verb} -c NAME)",
        )
    elif container in INJECTED_CONTAINERS:
        reader.add(
            "container",
            f"{container!r} is a container the Istio injector added; it runs as the proxy's "
            "UID 1337, whose traffic iptables never captures, so a shell there reaches any "
            f"address past the egress allow list; {verb} {'into' if verb == 'exec' else 'to'} "
            "the application container instead",
        )
    return reader.violations
