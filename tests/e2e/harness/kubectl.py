"""kubectl as the tests and the harness run it, and the kubeconfig files it reads.

Tests assert on what kubectl prints (the messages a developer would see), so the wrapper hands
back the whole CompletedProcess instead of parsed results.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from tests.e2e.harness.common import FIELD_MANAGER, KUBECTL_TIMEOUT_S, HarnessError


@dataclass(frozen=True)
class Kubectl:
    """Runs kubectl against one cluster; returns the CompletedProcess (stderr included)."""

    binary: Path
    kubeconfig: Path
    # kubectl caches API discovery per host:port under ~/.kube/cache for hours; a new
    # cluster on a recycled port would be served the previous one's resource list.
    cache_dir: Path | None = None

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        check: bool = False,
        timeout: float = KUBECTL_TIMEOUT_S,
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), f"--kubeconfig={self.kubeconfig}"]
        if self.cache_dir is not None:
            argv.append(f"--cache-dir={self.cache_dir}")
        argv += args
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        try:
            result = subprocess.run(
                argv,
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise HarnessError(f"kubectl {' '.join(args)} timed out after {timeout:.0f}s") from exc
        if check and result.returncode != 0:
            raise HarnessError(
                f"kubectl {' '.join(args)} failed (exit {result.returncode}):\n"
                f"{result.stderr.strip()}"
            )
        return result

    def json(self, *args: str) -> Any:
        """``kubectl ... -o json`` parsed; raises on failure."""
        return json.loads(self(*args, "-o", "json", check=True).stdout)

    def apply(
        self, objects: Mapping[str, Any] | Sequence[Mapping[str, Any]], *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Server-side apply of one object or a list of objects."""
        items = [objects] if isinstance(objects, Mapping) else list(objects)
        manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        return self(
            "apply",
            "--server-side",
            f"--field-manager={FIELD_MANAGER}",
            "-f",
            "-",
            input=manifest,
            check=check,
        )


_NOT_DNS: Final = re.compile(r"[^a-z0-9-]+")


def unique_name(base: str, *, max_length: int = 63) -> str:
    """A DNS-1123 label from ``base`` plus a random suffix. Namespaces are never reused:
    without a controller-manager a deleted namespace stays Terminating forever."""
    suffix = secrets.token_hex(3)
    slug = _NOT_DNS.sub("-", base.lower()).strip("-") or "e2e"
    slug = slug[: max_length - len(suffix) - 1].rstrip("-")
    return f"{slug}-{suffix}"


def create_namespace(
    kubectl: Kubectl, base: str, *, labels: Mapping[str, str] | None = None
) -> str:
    """Creates a uniquely named namespace with ``kubectl create`` (a CREATE the webhook
    sees, unlike server-side apply of an existing object) and returns its name."""
    name = unique_name(base)
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": dict(labels or {})},
    }
    kubectl("create", "-f", "-", input=json.dumps(manifest), check=True)
    return name


def kubeconfig_document(
    server: str, ca_pem: bytes, user: Mapping[str, Any], *, name: str = "egress-guard-e2e"
) -> dict[str, Any]:
    """A one-cluster, one-user kubeconfig; ``user`` is its ``users[].user`` entry."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": name, "user": dict(user)}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


def write_private(path: Path, text: str) -> None:
    """Writes credentials readable by their owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(text)


def write_kubeconfig(path: Path, document: Mapping[str, Any]) -> Path:
    """Writes a kubeconfig document privately; returns ``path``."""
    write_private(path, yaml.safe_dump(dict(document), sort_keys=False))
    return path
