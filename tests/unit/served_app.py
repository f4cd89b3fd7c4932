"""The webhook's flask app around a loaded policy, for tests that drive the handler in process
(fuzzing, memory): the one place they build the policy store."""

from __future__ import annotations

from flask import Flask

from webhook.admission.app import create_app
from webhook.core.policy import Policy
from webhook.policy_runtime import PolicyStore, embedded_policy_text
from webhook.settings import MAX_BODY_BYTES, Settings


def served_app(
    policy_text: str | None = None, *, max_body: int = MAX_BODY_BYTES, cache_size: int = 4096
) -> tuple[Flask, Policy]:
    """An app deciding with ``policy_text`` (the embedded policy by default), and that policy."""
    store = PolicyStore()
    result = store.update(policy_text or embedded_policy_text(), origin="test")
    if not result.ok or store.current is None:
        raise ValueError(f"the test policy does not load: {result.problems}")
    settings = Settings(max_body_bytes=max_body, decision_cache_size=cache_size)
    return create_app(settings, policy_store=store), store.current.policy
