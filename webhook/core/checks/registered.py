"""Imports every check module so that each registers itself in ``REGISTRY``."""

from webhook.core.checks import (  # noqa: F401
    common,
    destinationrules,
    extensions,
    gatewayapi,
    gateways,
    namespaces,
    networkpolicies,
    podconnections,
    pods,
    proxyconfigs,
    requestauthentications,
    serviceentries,
    services,
    sidecars,
    virtualservices,
    workloadentries,
)
