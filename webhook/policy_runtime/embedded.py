"""The policy shipped inside the package, used when no file or ConfigMap is named."""

from __future__ import annotations

from importlib import resources

EMBEDDED_POLICY = "banzai-demo.yaml"


def embedded_policy_text(name: str = EMBEDDED_POLICY) -> str:
    """The text of a policy shipped inside the package (``webhook/data``)."""
    return resources.files("webhook").joinpath("data", name).read_text(encoding="utf-8")
