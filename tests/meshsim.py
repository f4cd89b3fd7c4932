"""Istio as the judge: a thin client of the mesh oracle (``tools/meshsim``).

The oracle is a Go test binary linking Istio's own config generator (``pilot/test/xds``) and
traffic simulation (``pilot/pkg/simulation``). Given Istio objects, Kubernetes objects,
proxies and calls, it answers where each call ends: the listener, filter chain, route and
cluster every proxy on the way matches, the cluster's TLS and endpoints, the RBAC filters of
an egress gateway, and a verdict. It also runs Istio's validation on objects.

Protocol (one JSON object per line on stdin, one answer per line on stdout; the binary is
started with ``MESHSIM_SERVE=1 meshsim -test.run=^TestServe$ -test.timeout=0``):

request ``{"id", "op": "simulate", "config": YAML, "kube": YAML, "mesh": YAML?,
"proxies": [{"name", "kind": "sidecar"|"gateway", "namespace", "labels", "ip",
"serviceAccount"}], "calls": [{"id", "from": proxy name, "host", "address"?, "port",
"protocol": "http"|"http2"|"tcp", "tls": "plaintext"|"tls"|"mtls", "sni"?, "path"?}]}``

answer ``{"id", "op", "error"?, "elapsedMs", "rejected": [ObjectReport],
"results": [{"id", "verdict": "blocked"|"passthrough"|"direct"|"error", "reason", "host",
"port", "endpoints", "gateway": {"proxy", "namespace", "service", "subset", "sni",
"tlsMode", "port"}?, "legs": [{"proxy", "address", "port", "protocol", "tls", "sni",
"host", "listener", "filterChain", "routeConfig", "virtualHost", "route", "cluster",
"clusterType", "transport": {"mode", "sni"}, "endpoints", "error", "authz": {"allowed",
"filters": [{"name", "action", "policies", "matched"}], "unsupported"}}]}]}``

request ``{"id", "op": "validate", "config": YAML}`` answers ``{"objects": [{"kind",
"namespace", "name", "errors", "warnings"}]}``.

A Pod is synthesized per proxy (with ``security.istio.io/tlsMode: istio``) and an
EndpointSlice per Service selecting proxies, as the kubelet and the endpoint controller would;
Services need an explicit numeric ``targetPort`` (the fake registry does no defaulting).
Objects Istio's validation rejects are left out of the simulated mesh and listed in
``rejected``. A call whose cluster has an endpoint owned by a proxy continues as that proxy's
call (mTLS with the cluster's SNI, or the client's own bytes when the cluster does not
originate TLS); ``gateway`` records the first such hop.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO_ROOT / "tools" / "build.sh"
# A cold build links all of istiod's pilot: ~5 min on 2 cores, longer on a busy machine.
BUILD_TIMEOUT_S = 1800.0

Verdict = Literal["blocked", "passthrough", "direct", "error"]


class OracleError(RuntimeError):
    """The oracle could not be built, started, or answered a request with an error."""


@dataclass(frozen=True, slots=True)
class Proxy:
    """A workload with an Envoy: an application's sidecar or a gateway."""

    name: str
    namespace: str
    ip: str
    labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str = "default"
    kind: Literal["sidecar", "gateway"] = "sidecar"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "namespace": self.namespace,
            "labels": dict(self.labels),
            "ip": self.ip,
            "serviceAccount": self.service_account,
        }


@dataclass(frozen=True, slots=True)
class Call:
    """One connection the application behind ``source`` opens."""

    source: str
    host: str
    port: int
    protocol: Literal["http", "http2", "tcp"] = "tcp"
    tls: Literal["plaintext", "tls", "mtls"] = "plaintext"
    sni: str = ""
    address: str = ""
    id: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "from": self.source,
            "host": self.host,
            "port": self.port,
            "protocol": self.protocol,
            "tls": self.tls,
        }
        for key, value in (("sni", self.sni), ("address", self.address), ("id", self.id)):
            if value:
                out[key] = value
        return out


@dataclass(frozen=True, slots=True)
class Transport:
    """A cluster's upstream TLS: ISTIO_MUTUAL, MUTUAL, SIMPLE, AUTO or DISABLE, and its SNI;
    ``proxy_protocol`` when a PROXY protocol header precedes it."""

    mode: str
    sni: str = ""
    proxy_protocol: bool = False


@dataclass(frozen=True, slots=True)
class AuthzFilter:
    """One RBAC filter of a gateway's filter chain, as the oracle evaluated it."""

    name: str
    action: str
    policies: tuple[str, ...]
    matched: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Authz:
    """Whether the RBAC filters let the connection through."""

    allowed: bool
    filters: tuple[AuthzFilter, ...]
    unsupported: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Leg:
    """What one proxy on the way matched."""

    proxy: str
    address: str
    port: int
    protocol: str
    tls: str
    sni: str
    host: str
    listener: str
    filter_chain: str
    route_config: str
    virtual_host: str
    route: str
    cluster: str
    cluster_type: str
    transport: Transport | None
    endpoints: tuple[str, ...]
    error: str
    authz: Authz | None


@dataclass(frozen=True, slots=True)
class GatewayHop:
    """How the call entered an egress gateway."""

    proxy: str
    namespace: str
    service: str
    subset: str
    sni: str
    tls_mode: str
    port: int


@dataclass(frozen=True, slots=True)
class CallResult:
    """Where one call ends."""

    id: str
    verdict: Verdict
    reason: str
    host: str
    port: int
    endpoints: tuple[str, ...]
    gateway: GatewayHop | None
    legs: tuple[Leg, ...]

    def describe(self) -> str:
        """``direct github.com:443 via egress-github/github-0`` for assertion messages."""
        text = self.verdict
        if self.host:
            text += f" {self.host}:{self.port}"
        if self.gateway:
            text += f" via {self.gateway.proxy}/{self.gateway.subset or '-'}"
        if self.reason:
            text += f" ({self.reason})"
        return text


@dataclass(frozen=True, slots=True)
class ObjectReport:
    """Istio's validation verdict on one object."""

    kind: str
    namespace: str
    name: str
    errors: tuple[str, ...]
    warnings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Simulation:
    """The answer to one simulate request."""

    results: tuple[CallResult, ...]
    rejected: tuple[ObjectReport, ...]
    elapsed_ms: int


def _transport(raw: Mapping[str, Any] | None) -> Transport | None:
    return (
        None
        if raw is None
        else Transport(raw["mode"], raw.get("sni", ""), bool(raw.get("proxyProtocol")))
    )


def _authz(raw: Mapping[str, Any] | None) -> Authz | None:
    if raw is None:
        return None
    filters = tuple(
        AuthzFilter(f["name"], f["action"], tuple(f["policies"]), tuple(f["matched"]))
        for f in raw["filters"]
    )
    return Authz(raw["allowed"], filters, tuple(raw.get("unsupported") or ()))


def _leg(raw: Mapping[str, Any]) -> Leg:
    return Leg(
        proxy=raw["proxy"],
        address=raw["address"],
        port=raw["port"],
        protocol=raw["protocol"],
        tls=raw["tls"],
        sni=raw.get("sni", ""),
        host=raw.get("host", ""),
        listener=raw.get("listener", ""),
        filter_chain=raw.get("filterChain", ""),
        route_config=raw.get("routeConfig", ""),
        virtual_host=raw.get("virtualHost", ""),
        route=raw.get("route", ""),
        cluster=raw.get("cluster", ""),
        cluster_type=raw.get("clusterType", ""),
        transport=_transport(raw.get("transport")),
        endpoints=tuple(raw.get("endpoints") or ()),
        error=raw.get("error", ""),
        authz=_authz(raw.get("authz")),
    )


def _result(raw: Mapping[str, Any]) -> CallResult:
    gw = raw.get("gateway")
    return CallResult(
        id=raw.get("id", ""),
        verdict=raw["verdict"],
        reason=raw.get("reason", ""),
        host=raw.get("host", ""),
        port=raw.get("port", 0),
        endpoints=tuple(raw.get("endpoints") or ()),
        gateway=None
        if gw is None
        else GatewayHop(
            gw["proxy"],
            gw["namespace"],
            gw["service"],
            gw["subset"],
            gw["sni"],
            gw["tlsMode"],
            gw["port"],
        ),
        legs=tuple(_leg(leg) for leg in raw["legs"]),
    )


def _report(raw: Mapping[str, Any]) -> ObjectReport:
    return ObjectReport(
        raw["kind"],
        raw["namespace"],
        raw["name"],
        tuple(raw.get("errors") or ()),
        tuple(raw.get("warnings") or ()),
    )


def build_oracle() -> Path:
    """Build (or find in the cache) the oracle binary; fail loudly when that is impossible."""
    try:
        done = subprocess.run(
            ["bash", str(BUILD_SCRIPT), "meshsim"],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OracleError(f"tools/build.sh meshsim did not finish: {exc}") from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise OracleError(
            f"tools/build.sh meshsim failed (exit {done.returncode}):\n{done.stderr[-4000:]}"
        )
    binary = Path(lines[-1])
    if not os.access(binary, os.X_OK):
        raise OracleError(f"tools/build.sh meshsim printed {binary}, which is not executable")
    return binary


class Oracle:
    """One running oracle process; requests are answered in order, many per process."""

    def __init__(self, binary: Path) -> None:
        # a file, not a pipe: Istio logs a lot and a full pipe would stall the oracle
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        env = dict(os.environ, MESHSIM_SERVE="1")
        self._proc = subprocess.Popen(
            [str(binary), "-test.run=^TestServe$", "-test.timeout=0", "-test.count=1"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        self._lock = threading.Lock()
        self._seq = 0

    def close(self) -> None:
        """Close stdin (the oracle exits at EOF) and reap the process."""
        if self._proc.stdin and not self._proc.stdin.closed:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout:
            self._proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> Oracle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _stderr_tail(self) -> str:
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - 4000))
        return self._stderr.read().decode(errors="replace")

    def requests(self, payloads: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Send many requests, read their answers; a writer thread avoids pipe deadlock."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        stdin, stdout = self._proc.stdin, self._proc.stdout
        with self._lock:
            lines = []
            for payload in payloads:
                self._seq += 1
                lines.append(json.dumps({"id": str(self._seq), **payload}).encode() + b"\n")
            failure: list[BaseException] = []

            def write() -> None:
                try:
                    for line in lines:
                        stdin.write(line)
                    stdin.flush()
                except OSError as exc:
                    failure.append(exc)

            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            answers = []
            for _ in lines:
                line = stdout.readline()
                if not line:
                    writer.join(timeout=5)
                    raise OracleError(
                        f"the oracle exited (code {self._proc.poll()}):\n{self._stderr_tail()}"
                    )
                answers.append(json.loads(line))
            writer.join()
            if failure:
                raise OracleError(f"writing to the oracle failed: {failure[0]}")
        for answer in answers:
            if answer.get("error"):
                raise OracleError(f"oracle: {answer['error']}\n{self._stderr_tail()}")
        return answers

    def simulate_many(self, worlds: Iterable[World]) -> list[Simulation]:
        """Simulate several meshes, one request each, in one round trip."""
        answers = self.requests([w.to_json() for w in worlds])
        return [
            Simulation(
                results=tuple(_result(r) for r in a.get("results") or ()),
                rejected=tuple(_report(r) for r in a.get("rejected") or ()),
                elapsed_ms=a["elapsedMs"],
            )
            for a in answers
        ]

    def simulate(self, world: World) -> Simulation:
        """Where every call of ``world`` ends."""
        return self.simulate_many([world])[0]

    def validate(self, objects: Iterable[Mapping[str, Any]]) -> list[ObjectReport]:
        """Istio's validation (``pkg/config/validation``) on each object, in order."""
        answer = self.requests([{"op": "validate", "config": _dump(objects)}])[0]
        return [_report(r) for r in answer.get("objects") or ()]


@dataclass(frozen=True, slots=True)
class World:
    """A mesh to simulate: Istio objects, Kubernetes objects, proxies and calls."""

    config: tuple[Mapping[str, Any], ...]
    kube: tuple[Mapping[str, Any], ...]
    proxies: tuple[Proxy, ...]
    calls: tuple[Call, ...]
    mesh: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "op": "simulate",
            "config": _dump(self.config),
            "kube": _dump(self.kube),
            "proxies": [p.to_json() for p in self.proxies],
            "calls": [c.to_json() for c in self.calls],
        }
        if self.mesh:
            out["mesh"] = self.mesh
        return out


def _dump(objects: Iterable[Mapping[str, Any]]) -> str:
    # YAML, not JSON lines: Kubernetes' YAML-or-JSON decoder sniffs the first document
    # only and would read a JSON first document as one JSON stream.
    return yaml.safe_dump_all([dict(o) for o in objects], sort_keys=False)


_ORACLE: Oracle | None = None


def shared_oracle() -> Oracle:
    """The process-wide oracle, started on first use (build included)."""
    global _ORACLE
    if _ORACLE is None:
        _ORACLE = Oracle(build_oracle())
    return _ORACLE


def close_shared_oracle() -> None:
    """Stop the process-wide oracle if one was started."""
    global _ORACLE
    if _ORACLE is not None:
        _ORACLE.close()
        _ORACLE = None


def oracle_fixture() -> Iterator[Oracle]:
    """Body of the ``mesh_oracle`` pytest fixture (session scope): never skips."""
    yield shared_oracle()
