"""The ``egress-guard`` command: two daemons and the offline tools, one module per group.

Daemons: ``serve`` (the admission webhook, ``serving``) and ``controller`` (the Reconciler,
``reconciling``).  Offline tools: ``check``, ``explain``, ``render``, ``policy validate|schema``
and ``certs generate``.  Every command wires and prints; what it answers comes from the same core
functions the webhook and the Reconciler use, so ``check`` and ``explain`` answer exactly what
the cluster would.
"""

from __future__ import annotations

from webhook.cli import certs, checking, explaining, policies, reconciling, rendering, serving
from webhook.cli.common import main

__all__ = [
    "certs",
    "checking",
    "explaining",
    "main",
    "policies",
    "reconciling",
    "rendering",
    "serving",
]
