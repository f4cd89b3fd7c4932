"""The policy in force, below both adapters: load, validate, compile, swap, keep the last good.

The admission webhook and the Reconciler both decide with "the current policy"; this package is
the one place that holds it.  A ``PolicyStore`` compiles each new text off the request path and
swaps it in atomically, a broken text never replaces the last good policy, and ``PolicySource``
is the small protocol through which text arrives (a fixed text and a polled file live here, the
ConfigMap watch in ``webhook.kube``).  The adapters are handed a store and a source; neither
adapter imports the other.
"""

from __future__ import annotations

from webhook.policy_runtime.embedded import EMBEDDED_POLICY, embedded_policy_text
from webhook.policy_runtime.sources import FilePolicySource, PolicySource, StaticPolicySource
from webhook.policy_runtime.store import LoadedPolicy, PolicySink, PolicyStore, ReloadResult

__all__ = [
    "EMBEDDED_POLICY",
    "FilePolicySource",
    "LoadedPolicy",
    "PolicySink",
    "PolicySource",
    "PolicyStore",
    "ReloadResult",
    "StaticPolicySource",
    "embedded_policy_text",
]
