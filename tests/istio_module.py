"""The pinned ``istio.io/istio`` module on disk: its ``samples/`` and ``manifests/``.

The version is the one ``tools/versions.env`` pins for the oracle and the injector. The module
is found (downloaded once, verified against go.sum data like any dependency) with
``go mod download -json``; without Go or the module this fails loudly instead of skipping.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
VERSIONS_ENV: Final = REPO_ROOT / "tools" / "versions.env"
MODULE: Final = "istio.io/istio"
DOWNLOAD_TIMEOUT_S: Final = 15 * 60.0


class IstioModuleError(RuntimeError):
    """The pinned istio.io/istio module could not be found or downloaded."""


def istio_version() -> str:
    """``ISTIO_VERSION`` from tools/versions.env."""
    found = re.search(r"^ISTIO_VERSION=(\S+)$", VERSIONS_ENV.read_text(), re.MULTILINE)
    if found is None:
        raise IstioModuleError(f"{VERSIONS_ENV.name} pins no ISTIO_VERSION")
    return found.group(1)


@functools.cache
def istio_module_dir() -> Path:
    """The module's directory in the Go module cache (looked up once per process)."""
    target = f"{MODULE}@{istio_version()}"
    # Outside any module and workspace, so the module cache is used directly.
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOWORK": "off"}
    with tempfile.TemporaryDirectory() as cwd:
        try:
            done = subprocess.run(
                ["go", "mod", "download", "-json", target],
                capture_output=True,
                text=True,
                cwd=cwd,
                env=env,
                timeout=DOWNLOAD_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise IstioModuleError(f"go mod download {target} did not run: {exc}") from exc
    try:
        info = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise IstioModuleError(f"go mod download {target}: {done.stderr[-2000:]}") from exc
    directory = Path(info.get("Dir") or "")
    if info.get("Error") or not directory.is_dir():
        raise IstioModuleError(f"go mod download {target}: {info.get('Error') or done.stderr}")
    return directory
