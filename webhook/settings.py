"""The webhook service's configuration: one frozen value, built once from flags and passed in.

The service's configuration comes from command-line flags only, never from environment variables
or module globals: ``egress-guard serve`` turns its flags into a ``Settings`` and hands it to the
app factory and the gunicorn runner, so tests build services with any configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MAX_BODY_BYTES = 6 * 1024 * 1024
# the API server keeps idle webhook connections for 90 s; closing earlier costs a new handshake
DEFAULT_KEEPALIVE_SECONDS = 120
# a new TLS handshake a minute per connection is noise; a worker restart heals within a minute
DEFAULT_CONNECTION_LIFETIME_SECONDS = 60.0
DEFAULT_BIND = "127.0.0.1:8443"
# about 1 KiB an entry (measured), so a few MiB; more distinct objects than most clusters resubmit
DEFAULT_DECISION_CACHE_SIZE = 4096


def split_host_port(text: str, *, option: str = "--bind") -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8443`` too) as host and port; ValueError naming ``option``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{option} expects HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class ConfigMapRef:
    """A ConfigMap holding the policy, ``namespace/name``."""

    namespace: str
    name: str

    @classmethod
    def parse(cls, text: str) -> ConfigMapRef:
        """Parse ``NAMESPACE/NAME``; raise ValueError otherwise."""
        namespace, sep, name = text.partition("/")
        if not sep or not namespace or not name or "/" in name:
            raise ValueError(f"expected NAMESPACE/NAME, got {text!r}")
        return cls(namespace, name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything ``egress-guard serve`` needs to run."""

    bind: str = DEFAULT_BIND
    cert_file: Path | None = None
    key_file: Path | None = None
    # at most one of the two; neither means the embedded banzai-demo policy
    policy_file: Path | None = None
    policy_configmap: ConfigMapRef | None = None
    kubeconfig: Path | None = None
    # one worker process with threads: the policy and its watcher live in one process, and the
    # decision itself is microseconds, so more processes buy little (measured in
    # tests/bench/bench_service.py); with several, each keeps its own policy and watcher, and
    # /metrics sums every worker's counts
    workers: int = 1
    threads: int = 8
    keepalive: int = DEFAULT_KEEPALIVE_SECONDS
    # with several workers, a keep-alive connection is closed (Connection: close) after this many
    # seconds, so clients reconnect and the split over the workers heals; 0 keeps it for ever
    connection_lifetime: float = DEFAULT_CONNECTION_LIFETIME_SECONDS
    timeout: int = 30
    graceful_timeout: int = 10
    max_body_bytes: int = MAX_BODY_BYTES
    policy_poll_interval: float = 1.0
    cert_check_interval: float = 1.0
    log_level: str = "info"
    # log one line per allowed decision too (denials and audits are always logged)
    log_allowed: bool = True
    # decisions kept for identical reviews (GitOps dry-runs, apply retries); 0 turns it off
    decision_cache_size: int = DEFAULT_DECISION_CACHE_SIZE
    # who may delete the policy ConfigMap (user names, groups); nobody when both are empty
    security_team_users: frozenset[str] = frozenset()
    security_team_groups: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("--cert-file and --key-file go together")
        if self.policy_file is not None and self.policy_configmap is not None:
            raise ValueError("--policy and --policy-configmap are mutually exclusive")
        if self.workers < 1 or self.threads < 1:
            raise ValueError("workers and threads must be at least 1")
        if self.decision_cache_size < 0:
            raise ValueError("--decision-cache-size must be 0 (off) or more")

    @property
    def host_port(self) -> tuple[str, int]:
        """The bind address split into host and port (``[::1]:8443`` works too)."""
        return split_host_port(self.bind)
