"""RequestAuthentication: the key sets istiod fetches for it.

A JWT rule's key set is fetched from ``jwksUri``, or, with neither ``jwksUri`` nor inline
``jwks``, by OpenID discovery at ``issuer`` + ``/.well-known/openid-configuration``.  In
Istio's default fetch mode istiod fetches it, again and again while the rule exists; istiod runs
outside the guardrail and does not go through the egress gateway, so a URL of the tenant's
choosing is a request to any host, carrying whatever the tenant writes into it.  (In the Envoy
fetch modes a proxy fetches ``jwksUri`` through the mesh's cluster for its host, inline keys or
not; the hybrid mode falls back to istiod when there is no such cluster.)

istiod follows redirects (up to ten, to any host) and trusts the ``jwks_uri`` of a discovery
document, so whoever serves the URL chooses where istiod goes next.  The host of every URL that
is fetched must therefore name a Service of a namespace the guardrail excludes (the platform's,
such as an identity provider run beside istiod; a tenant's own Service could redirect anywhere),
or be allowed to every workload of the namespace (a namespace-wide rule: the fetch carries no
label and no identity the egress gateway could check).  IP addresses are refused: one inside the
cluster may be a tenant's pod.  A URL egress-guard cannot read with certainty is refused rather
than guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from webhook.core.checks import ClusterView, checks
from webhook.core.checks.common import Reader
from webhook.core.decisions import STOP_AFTER_VIOLATIONS, Violation
from webhook.core.errors import InvalidHostError
from webhook.core.hosts import check_dns_name, is_ip
from webhook.core.policy import Policy
from webhook.core.reviews import Review

DEFAULT_PORTS = {"http": 80, "https": 443}
# scheme://host[:port][/path, query...]: no user part, no backslash, nothing a client might read
# otherwise than this pattern does
_URL = re.compile(
    r"(?i)(https?)://([a-z0-9.-]+|\[[0-9a-f:.]+\])(?::([0-9]{1,5}))?(?:[/?#][^\s\\]*)?"
)
HINT = (
    "put the keys inline (jwks), serve them from a Service of a platform namespace the "
    "guardrail excludes (named in full, name.namespace.svc.<cluster domain>), or ask for the "
    "host in the egress policy for the whole namespace"
)


@checks("security.istio.io", "RequestAuthentication")
def check_request_authentication(
    review: Review, policy: Policy, view: ClusterView
) -> Iterable[Violation]:
    """Every key set URL that is fetched names the cluster or a host the namespace may reach."""
    del view
    if review.operation == "DELETE":
        return ()
    reader = Reader(limit=STOP_AFTER_VIOLATIONS)
    spec = reader.spec(review.object)
    for where, rule in reader.mappings(spec.get("jwtRules"), "spec.jwtRules"):
        uri = reader.string(rule.get("jwksUri"), f"{where}.jwksUri")
        if uri:
            # judged even beside inline keys: in the Envoy fetch modes the URI is fetched anyway
            _check_url(reader, policy, review.namespace, f"{where}.jwksUri", uri)
            continue
        if reader.string(rule.get("jwks"), f"{where}.jwks"):
            # inline keys and no URI: nothing is fetched
            continue
        issuer = reader.string(rule.get("issuer"), f"{where}.issuer")
        # discovery fetches issuer + suffix; an issuer without a colon is no absolute URL and
        # nothing is fetched for it (the usual "name@domain" issuers)
        if issuer and ":" in issuer:
            _check_url(reader, policy, review.namespace, f"{where}.issuer", issuer)
    return reader.violations


def _check_url(reader: Reader, policy: Policy, namespace: str, where: str, url: str) -> None:
    match = _URL.fullmatch(url)
    if match is None:
        reader.add(
            where,
            f"{url!r} is fetched by istiod, outside the egress gateway, and egress-guard cannot "
            f"tell which host it names; write it as http(s)://host[:port]/path, or {HINT}",
        )
        return
    scheme, raw_host, raw_port = match.groups()
    port = int(raw_port) if raw_port else DEFAULT_PORTS[scheme.lower()]
    host = raw_host.strip("[]").lower()
    if is_ip(host):
        reader.add(
            where,
            f"{url!r} makes istiod fetch from the address {host}, which may be anyone's (a "
            f"pod's, or outside the cluster), past the egress gateway; {HINT}",
        )
        return
    try:
        name = check_dns_name(host, allow_wildcard=False)
    except InvalidHostError:
        reader.add(where, f"{url!r} names no valid host; {HINT}")
        return
    if policy.is_internal(name):
        served = _service_namespace(policy, name)
        if served is not None and policy.is_excluded(served):
            return
        reader.add(
            where,
            f"{url!r} makes istiod fetch from {name}, served from a namespace the guardrail "
            "governs: istiod follows that server's redirects and discovery documents to any "
            f"host, past the egress gateway; {HINT}",
        )
        return
    if _allowed(policy, namespace, name, port):
        return
    reader.add(
        where,
        f"{url!r} makes istiod fetch from {name}:{port} on behalf of namespace {namespace}, "
        "outside the egress gateway, and the egress policy does not allow that host to every "
        f"workload of the namespace; {HINT}",
    )


def _service_namespace(policy: Policy, name: str) -> str | None:
    """The namespace of ``service.namespace.svc.<domain>`` (None for other cluster names)."""
    labels = name.removesuffix(f".svc.{policy.cluster_domain}").split(".")
    return labels[1] if len(labels) == 2 and name != labels[0] else None


def _allowed(policy: Policy, namespace: str, host: str, port: int) -> bool:
    """Whether a namespace-wide rule of ``namespace`` allows ``host`` on ``port``."""
    allowed = policy.allowed_directly(namespace)
    return any(
        port in policy.services[service].port_numbers
        for service in policy.services_covering(host) & allowed
    )
