"""The oracle as the differential fuzzer uses it: one callable, request dict in, response out."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any


class _Process:
    """A running meshsim test binary answering one JSON line per request line."""

    def __init__(self, binary: str) -> None:
        env = {**os.environ, "MESHSIM_SERVE": "1"}
        self._proc = subprocess.Popen(
            [binary, "-test.run", "^TestServe$"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )

    def __call__(self, request: Mapping[str, Any]) -> Mapping[str, Any]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the meshsim oracle exited")
        answer: Mapping[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=60)


@contextmanager
def start_oracle() -> Iterator[_Process]:
    """Start the oracle binary named by ``MESHSIM_BINARY``; stop it on exit."""
    binary = os.environ.get("MESHSIM_BINARY")
    if not binary:
        raise RuntimeError("set MESHSIM_BINARY to the meshsim test binary")
    process = _Process(binary)
    try:
        yield process
    finally:
        process.close()
