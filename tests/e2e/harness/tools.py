"""The pinned binaries and CRDs the control plane runs from, built by ``tools/build.sh``.

The build takes a lock and caches outside the repository, so concurrent callers wait for one
build instead of racing; a warm call costs well under a second.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.e2e.harness.common import REPO_ROOT, HarnessError

TOOLS_BUILD_SCRIPT: Final = REPO_ROOT / "tools" / "build.sh"
TOOLS_BUILD_TIMEOUT_S: Final = 45 * 60.0


@dataclass(frozen=True)
class Tools:
    """The directory ``tools/build.sh`` filled with pinned binaries and CRDs."""

    dir: Path

    @property
    def etcd(self) -> Path:
        return self.dir / "etcd"

    @property
    def kube_apiserver(self) -> Path:
        return self.dir / "kube-apiserver"

    @property
    def kubectl(self) -> Path:
        return self.dir / "kubectl"

    @property
    def helm(self) -> Path:
        return self.dir / "helm"

    @property
    def istio_inject(self) -> Path:
        """Istio's sidecar injection webhook (``tools/istio-inject``)."""
        return self.dir / "istio-inject"

    @property
    def istio_crds(self) -> Path:
        return self.dir / "istio-crds.yaml"

    @property
    def gateway_api_crds(self) -> Path:
        return self.dir / "gateway-api-crds.yaml"


def build_tools(*, stream_progress: bool = True) -> Tools:
    """Builds (or finds cached) pinned tools; cold ~5 min on 2 cores, warm < 1 s."""
    if not TOOLS_BUILD_SCRIPT.is_file():
        raise HarnessError(f"{TOOLS_BUILD_SCRIPT} is missing")
    try:
        # stderr carries the build progress: pass it through so a cold build is not silent.
        result = subprocess.run(
            ["bash", str(TOOLS_BUILD_SCRIPT)],
            stdout=subprocess.PIPE,
            stderr=None if stream_progress else subprocess.PIPE,
            text=True,
            timeout=TOOLS_BUILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(
            f"tools/build.sh did not finish in {TOOLS_BUILD_TIMEOUT_S:.0f}s"
        ) from exc
    if result.returncode != 0:
        raise HarnessError(
            f"tools/build.sh failed (exit {result.returncode}): {result.stderr or ''}"
        )
    lines = result.stdout.strip().splitlines()
    if not lines:
        raise HarnessError("tools/build.sh printed no tools directory")
    tools = Tools(Path(lines[-1]))
    for path in (
        tools.etcd,
        tools.kube_apiserver,
        tools.kubectl,
        tools.istio_inject,
        tools.istio_crds,
        tools.gateway_api_crds,
    ):
        if not path.is_file():
            raise HarnessError(f"tools/build.sh did not produce {path}")
    return tools
