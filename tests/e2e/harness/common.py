"""What every harness module shares: where things are, how long to wait, the one error type.

Everything the harness serves listens on loopback only, on free ports chosen at start.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parents[3]
DEFAULT_STATE_DIR: Final = REPO_ROOT / ".e2e"
LOOPBACK: Final = "127.0.0.1"

# Where the webhook lives and where it reads its policy from; the chart uses the same.
WEBHOOK_NAMESPACE: Final = "egress-guard"
POLICY_CONFIGMAP: Final = "egress-guard-policy"
POLICY_KEY: Final = "policy.yaml"
POLICY_MANIFEST: Final = REPO_ROOT / "policies" / "banzai-demo.yaml"
FIELD_MANAGER: Final = "egress-guard-e2e"

READY_TIMEOUT_S: Final = 90.0
STOP_TIMEOUT_S: Final = 15.0
KUBECTL_TIMEOUT_S: Final = 120.0
PORT_ATTEMPTS: Final = 3

EXISTING_CLUSTER_ENV: Final = "EGRESS_GUARD_E2E_EXISTING"


class HarnessError(RuntimeError):
    """The control plane or the webhook could not be started, reached or stopped."""


def existing_cluster_kubeconfig() -> Path | None:
    """The kubeconfig of a cluster the e2e tests should use instead of starting one:
    ``KUBECONFIG`` when ``EGRESS_GUARD_E2E_EXISTING=1``, else None."""
    if os.environ.get(EXISTING_CLUSTER_ENV) != "1":
        return None
    value = os.environ.get("KUBECONFIG", "")
    if not value or not Path(value).is_file():
        raise HarnessError(f"{EXISTING_CLUSTER_ENV}=1 needs KUBECONFIG to name an existing file")
    return Path(value)


def say(message: str) -> None:
    """Progress for humans, on stderr (stdout of the CLI is meant for ``eval``)."""
    print(f"[e2e] {message}", file=sys.stderr, flush=True)
