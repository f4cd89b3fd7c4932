"""The ``egress-guard`` command: two daemons and the offline tools, one module per group.

Daemons: ``serve`` (the admission webhook, ``serving``) and ``controller`` (the Reconciler,
``reconciling``).  Offline tools: ``check``, ``explain``, ``render``,
``policy validate|diff|schema`` and ``certs generate``; ``audit`` judges a cluster's objects.
Every command wires and prints; what it answers comes from the same core functions the webhook,
the Reconciler and the background audit use, so ``check`` and ``explain`` answer exactly what
the cluster would.
"""

from __future__ import annotations

from webhook.cli import (
    auditing,
    certs,
    checking,
    explaining,
    policies,
    reconciling,
    rendering,
    serving,
)
from webhook.cli.common import main

__all__ = [
    "auditing",
    "certs",
    "checking",
    "explaining",
    "main",
    "policies",
    "reconciling",
    "rendering",
    "serving",
]
