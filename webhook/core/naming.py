"""Names the generator gives the objects and subsets it writes.

The generator writes them and the checks recognise them (a tenant route naming a generated
gateway subset is judged by the service the subset stands for), so one module names them for
both, below either.
"""

from __future__ import annotations

import re

from webhook.core.external_services import ExternalService

# every object the generator writes is named with it
PREFIX = "egress-guard-"


def dns_label(text: str) -> str:
    """``text`` as a DNS label: lower case, runs of anything else become one dash."""
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")


def gateway_subset(service: ExternalService, index: int) -> str:
    """The egress gateway DestinationRule subset for host ``index`` of ``service``.

    The subset sets the SNI of the sidecar->gateway mTLS hop, which is what the gateway routes
    and authorizes on, so routes naming it are judged by the service it stands for.
    """
    return dns_label(f"{service.name}-{index}")


def tenant_route_name(service: str) -> str:
    """The VirtualService the generator writes in each namespace allowed ``service``: it sends
    the namespace's calls to the service's hosts to the egress gateway (messages name it)."""
    return f"{PREFIX}{service}"
