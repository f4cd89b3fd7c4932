"""The ``egress-guard`` command: serve the webhook, and answer policy questions offline.

One click group; every command is a thin door onto the same core functions the webhook uses
(``decide``, ``parse_policy``, ``Policy.services_covering``), so ``check`` and ``explain`` answer
exactly what the admission webhook would.  Exit codes of the offline commands: 0 allowed / valid,
1 denied / invalid, 2 bad input (unreadable file, bad YAML, unusable policy).
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, cast

import click
import yaml

from webhook.admission.policy_store import (
    EMBEDDED_POLICY,
    ConfigMapPolicySource,
    FilePolicySource,
    PolicySource,
    SourceUnavailableError,
    StaticPolicySource,
    embedded_policy_text,
)
from webhook.core.checks import ClusterView
from webhook.core.engine import decide
from webhook.core.errors import InvalidHostError, PolicyError, ReviewError
from webhook.core.hosts import check_dns_name, is_ip
from webhook.core.policy import Policy, Workloads
from webhook.core.policy_parsing import parse_policy
from webhook.core.policy_schema import POLICY_SCHEMA
from webhook.core.reviews import OPERATIONS, Operation, Review, parse_review, review_of_manifest
from webhook.settings import (
    DEFAULT_BIND,
    DEFAULT_DECISION_CACHE_SIZE,
    DEFAULT_KEEPALIVE_SECONDS,
    ConfigMapRef,
    Settings,
    split_host_port,
)

EXIT_OK = 0
EXIT_DENIED = 1
EXIT_BAD_INPUT = 2

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    click.echo(f"egress-guard: {message}", err=True)
    sys.exit(code)


def _read(path: str) -> str:
    """A file's text, ``-`` for stdin; exit 2 when unreadable."""
    try:
        if path == "-":
            return sys.stdin.read()
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read {path}: {exc}")


def load_policy(path: str | None) -> Policy:
    """The policy in ``path`` (a ConfigMap or bare document), or the embedded default."""
    if path is None:
        text, origin = embedded_policy_text(), f"embedded:{EMBEDDED_POLICY}"
    else:
        text, origin = _read(path), path
    try:
        return parse_policy(text, name=origin)
    except PolicyError as exc:
        _fail(f"the policy {origin} is not usable:\n{_problems(exc)}")


def _problems(exc: PolicyError) -> str:
    return "\n".join(f"  {p.path or '<root>'}: {p.message}" for p in exc.problems)


_POLICY_OPTION = click.option(
    "--policy",
    "policy_path",
    metavar="FILE",
    help="Policy file: a ConfigMap manifest or the bare policy document "
    f"(default: the embedded {EMBEDDED_POLICY}).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="egress-guard")
def main() -> None:
    """egress-guard: an egress allow list enforced as Istio configuration."""


# --- serve ---------------------------------------------------------------------------------


def _cache_dir() -> Path:
    """Where the development certificate is kept between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "egress-guard" / "dev-certs"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        # read-only home (containers): a private temporary directory instead
        return Path(tempfile.mkdtemp(prefix="egress-guard-certs-"))
    return path


def sidecar_view(settings: Settings) -> ClusterView:
    """The cluster's Sidecars from an informer cache (``webhook.kube``), started and synced."""
    from webhook.kube.client import load_api_client
    from webhook.kube.cluster_view import SidecarView

    kubeconfig = str(settings.kubeconfig) if settings.kubeconfig else None
    return SidecarView(load_api_client(kubeconfig)).start()


def source_for(settings: Settings) -> PolicySource:
    """The policy source ``settings`` ask for: a file, a ConfigMap, or the embedded default."""
    if settings.policy_file is not None:
        return FilePolicySource(settings.policy_file, interval=settings.policy_poll_interval)
    if settings.policy_configmap is not None:
        ref = settings.policy_configmap
        return ConfigMapPolicySource(ref.namespace, ref.name, kubeconfig=settings.kubeconfig)
    return StaticPolicySource(embedded_policy_text(), origin=f"embedded:{EMBEDDED_POLICY}")


@main.command()
@click.option("--bind", default=DEFAULT_BIND, show_default=True, help="HOST:PORT to listen on.")
@click.option("--cert-file", type=click.Path(dir_okay=False, path_type=Path), help="PEM chain.")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), help="PEM key.")
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Policy file, watched for changes (a mounted ConfigMap works).",
)
@click.option("--policy-configmap", metavar="NS/NAME", help="Watch this ConfigMap instead.")
@click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--keepalive", default=DEFAULT_KEEPALIVE_SECONDS, show_default=True, type=click.IntRange(0)
)
@click.option("--policy-poll-interval", default=1.0, show_default=True, type=float)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.option(
    "--log-allowed/--no-log-allowed",
    default=True,
    show_default=True,
    help="Log allowed decisions too (denials are always logged).",
)
@click.option(
    "--decision-cache-size",
    default=DEFAULT_DECISION_CACHE_SIZE,
    show_default=True,
    type=click.IntRange(0),
    help="Validation decisions kept for identical reviews (GitOps dry-runs, apply retries); "
    "0 turns the cache off.",
)
@click.option(
    "--cluster-view/--no-cluster-view",
    default=None,
    help="Watch the cluster's Sidecars for the checks that depend on them "
    "(default: on with --policy-configmap, off otherwise).",
)
@click.option(
    "--dev-cert-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to keep the self-signed development certificate (no --cert-file).",
)
def serve(
    bind: str,
    cert_file: Path | None,
    key_file: Path | None,
    policy_file: Path | None,
    policy_configmap: str | None,
    kubeconfig: Path | None,
    threads: int,
    workers: int,
    keepalive: int,
    policy_poll_interval: float,
    log_level: str,
    log_allowed: bool,
    decision_cache_size: int,
    cluster_view: bool | None,
    dev_cert_dir: Path | None,
) -> None:
    """Run the admission webhook (gunicorn, TLS): /validate /mutate /healthz /readyz /metrics."""
    from webhook.admission.logs import configure_logging
    from webhook.admission.server import WebhookServer
    from webhook.tls import dev_certificates

    configure_logging(log_level)
    try:
        ref = ConfigMapRef.parse(policy_configmap) if policy_configmap else None
        if kubeconfig is not None and ref is None:
            raise ValueError("--kubeconfig only makes sense with --policy-configmap")
        if cert_file is None and key_file is None:
            certs = dev_certificates(dev_cert_dir or _cache_dir())
            cert_file, key_file = certs.cert_file, certs.key_file
            click.echo(
                f"egress-guard: self-signed development certificate, CA at {certs.ca_file}\n"
                f"  try: curl --cacert {certs.ca_file} https://{bind}/healthz",
                err=True,
            )
        settings = Settings(
            bind=bind,
            cert_file=cert_file,
            key_file=key_file,
            policy_file=policy_file,
            policy_configmap=ref,
            kubeconfig=kubeconfig,
            threads=threads,
            workers=workers,
            keepalive=keepalive,
            policy_poll_interval=policy_poll_interval,
            log_level=log_level,
            log_allowed=log_allowed,
            decision_cache_size=decision_cache_size,
        )
        settings.host_port  # noqa: B018  (validates --bind before gunicorn does)
        if ref is not None:
            # fail now, with a clear message, rather than in the worker
            ConfigMapPolicySource(ref.namespace, ref.name, kubeconfig=kubeconfig)
    except (ValueError, SourceUnavailableError) as exc:
        _fail(str(exc))
    for path in (cert_file, key_file):
        if path is not None and not path.is_file():
            _fail(f"no such file: {path}")
    source = (
        f"file {policy_file}"
        if policy_file
        else f"ConfigMap {ref}"
        if ref
        else f"embedded {EMBEDDED_POLICY}"
    )
    click.echo(f"egress-guard: serving https://{bind} with the policy from {source}", err=True)
    if cluster_view is None:
        cluster_view = ref is not None
    WebhookServer(
        settings,
        source_factory=source_for,
        view_factory=sidecar_view if cluster_view else None,
    ).run()


# --- check ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ManifestView:
    """The cluster as the manifests given to ``check`` describe it (their Sidecars)."""

    by_namespace: Mapping[str, Sequence[Mapping[str, Any]]]

    def sidecars(self, namespace: str) -> Sequence[Mapping[str, Any]]:
        """Sidecars among the manifests, in ``namespace``."""
        return self.by_namespace.get(namespace, ())


def _documents(text: str, source: str) -> Iterator[Mapping[str, Any]]:
    """The objects in a file: YAML documents, ``List`` items, or one AdmissionReview JSON."""
    try:
        docs = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        _fail(f"{source} is not valid YAML/JSON: {exc}")
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, Mapping):
            _fail(f"{source}: expected Kubernetes objects, found a {type(doc).__name__}")
        if doc.get("kind") == "List" or (
            str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list)
        ):
            for item in doc.get("items") or ():
                if not isinstance(item, Mapping):
                    _fail(f"{source}: a List item is not an object")
                yield item
        else:
            yield doc


def _reviews(
    paths: Sequence[str], operation: Operation, namespace: str | None
) -> list[tuple[Review, str]]:
    reviews: list[tuple[Review, str]] = []
    for path in paths:
        for doc in _documents(_read(path), path):
            if doc.get("kind") == "AdmissionReview":
                try:
                    reviews.append((parse_review(doc), path))
                except ReviewError as exc:
                    _fail(f"{path}: {exc}")
            else:
                reviews.append(
                    (review_of_manifest(doc, operation=operation, namespace=namespace), path)
                )
    return reviews


def _view(reviews: Sequence[tuple[Review, str]]) -> ManifestView:
    sidecars: dict[str, list[Mapping[str, Any]]] = {}
    for review, _ in reviews:
        obj = review.object
        if review.kind == "Sidecar" and obj is not None and review.operation != "DELETE":
            sidecars.setdefault(review.namespace, []).append(obj)
    return ManifestView(sidecars)


@main.command()
@_POLICY_OPTION
@click.option("--namespace", "-n", help="Namespace for objects that do not name one.")
@click.option(
    "--operation",
    default="CREATE",
    show_default=True,
    type=click.Choice(sorted(OPERATIONS - {"CONNECT"}), case_sensitive=False),
)
@click.argument("manifests", nargs=-1, required=True)
def check(
    policy_path: str | None, namespace: str | None, operation: str, manifests: tuple[str, ...]
) -> None:
    """Decide manifests (YAML, '-' for stdin, or AdmissionReview JSON) as the webhook would.

    One line per object, ALLOW|DENY|AUDIT KIND NS/NAME: reason.  Exit 0 when everything is
    admitted, 1 when anything is denied, 2 on bad input.
    """
    policy = load_policy(policy_path)
    reviews = _reviews(manifests, cast(Operation, operation.upper()), namespace)
    view = _view(reviews)
    denied = False
    for review, _ in reviews:
        decision = decide(review, policy, view=view)
        where = f"{review.namespace}/{review.name}" if review.namespace else review.name
        reason = decision.reason or "allowed"
        click.echo(f"{decision.verdict.upper()} {review.kind} {where}: {reason}")
        for warning in decision.warnings if not decision.audited else ():
            click.echo(f"  warning: {warning}")
        denied = denied or not decision.allowed
    sys.exit(EXIT_DENIED if denied else EXIT_OK)


# --- explain -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Client:
    """``--from``: a namespace, workload labels and a service account."""

    namespace: str
    labels: Mapping[str, str]
    service_account: str | None

    @classmethod
    def parse(cls, text: str) -> Client:
        """Parse ``NS[/LABEL=VALUE...][@SERVICEACCOUNT]`` (labels split by ``/`` or ``,``)."""
        source, at, account = text.partition("@")
        namespace, _, label_text = source.partition("/")
        if not namespace or (at and not account):
            raise ValueError(f"expected NS[/LABEL=VALUE...][@SERVICEACCOUNT], got {text!r}")
        labels: dict[str, str] = {}
        for item in label_text.replace(",", "/").split("/"):
            if not item:
                continue
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise ValueError(f"expected LABEL=VALUE, got {item!r}")
            labels[key] = value
        return cls(namespace, labels, account or None)

    def describe(self) -> str:
        """``test-app{k8s-app=app-a}[sa=build]``."""
        text = self.namespace
        if self.labels:
            text += "{" + ",".join(f"{k}={v}" for k, v in sorted(self.labels.items())) + "}"
        if self.service_account:
            text += f"[sa={self.service_account}]"
        return text


def _destination(text: str) -> tuple[str, int | None]:
    """Parse ``HOST[:PORT]`` (``[v6]:port`` too) into a normalized host and port."""
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    port = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"invalid port {port_text!r}")
        port = int(port_text)
    if is_ip(host):
        return str(ipaddress.ip_network(host, strict=False).network_address), port
    try:
        return check_dns_name(host), port
    except InvalidHostError as exc:
        raise ValueError(str(exc)) from exc


@main.command()
@_POLICY_OPTION
@click.option("--from", "source", required=True, metavar="NS[/LABEL=VALUE...][@SA]")
@click.option("--to", "destination", required=True, metavar="HOST[:PORT]")
def explain(policy_path: str | None, source: str, destination: str) -> None:
    """Say whether a workload may reach a host, and which rule decides it.

    Exit 0 when allowed, 1 when denied, 2 on bad input.
    """
    policy = load_policy(policy_path)
    try:
        client = Client.parse(source)
        host, port = _destination(destination)
    except ValueError as exc:
        _fail(str(exc))
    target = f"{host}:{port}" if port else host
    head = f"{client.describe()} -> {target}"
    if policy.is_excluded(client.namespace):
        click.echo(f"ALLOW {head}")
        click.echo(
            f"  namespace {client.namespace} is excluded from the egress guardrail: "
            "egress-guard neither restricts nor routes its traffic"
        )
        sys.exit(EXIT_OK)
    if is_ip(host):
        services = frozenset(n for n in policy.services if policy.address_allowed(host, [n]))
    else:
        services = policy.services_covering(host)
    if not services:
        click.echo(f"DENY {head}")
        click.echo(f"  no external service in the allow list covers {host}")
        reachable = policy.allowed_for(Workloads(client.namespace, client.labels))
        click.echo(f"  {client.describe()} may reach: {policy.describe_allowed(reachable)}")
        sys.exit(EXIT_DENIED)
    reasons: list[str] = []
    for name in sorted(services):
        svc = policy.services[name]
        ports = ", ".join(f"{p.number}/{p.protocol}" for p in svc.ports)
        if port is not None and port not in {p.number for p in svc.ports}:
            reasons.append(f"service {name} covers {host} but not port {port} (ports: {ports})")
            continue
        rules = policy.rules_allowing(client.namespace, name, client.labels, client.service_account)
        if rules:
            rule = rules[0]
            click.echo(f"ALLOW {head}")
            click.echo(f"  rule {rule.name}: {rule.source.describe()} may reach {name}")
            click.echo(f"  service {name}: hosts {', '.join(svc.hosts)}; ports {ports}")
            click.echo(f"  through egress gateway {svc.gateway.ref}")
            if rule.source.service_account:
                click.echo(
                    "  the service account is enforced at the egress gateway "
                    "(AuthorizationPolicy on the mTLS identity)"
                )
            sys.exit(EXIT_OK)
        wanted = [r for r in policy.rules if name in r.services]
        needs = "; ".join(f"rule {r.name} allows {r.source.describe()}" for r in wanted)
        reasons.append(
            f"service {name} covers {host}, but no rule lets {client.describe()} reach it"
            + (f" ({needs})" if needs else " (no rule names it)")
        )
    click.echo(f"DENY {head}")
    for reason in reasons:
        click.echo(f"  {reason}")
    reachable = policy.allowed_for(Workloads(client.namespace, client.labels))
    click.echo(f"  {client.describe()} may reach: {policy.describe_allowed(reachable)}")
    sys.exit(EXIT_DENIED)


# --- policy --------------------------------------------------------------------------------


@main.group()
def policy() -> None:
    """Work with egress policy documents."""


@policy.command("validate")
@click.argument("file")
def policy_validate(file: str) -> None:
    """Check a policy file; list every problem with its field path.  Exit 0 valid, 1 not, 2 bad."""
    text = _read(file)
    try:
        compiled = parse_policy(text, name=file)
    except PolicyError as exc:
        click.echo(f"{file}: INVALID ({len(exc.problems)} problem(s))")
        click.echo(_problems(exc))
        sys.exit(EXIT_DENIED)
    click.echo(
        f"{file}: OK, mode {compiled.mode.value}, {len(compiled.services)} external service(s), "
        f"{len(compiled.rules)} rule(s), revision {compiled.revision}"
    )


def schema_text() -> str:
    """The policy JSON Schema as written to ``policies/egress-policy.schema.json``."""
    return json.dumps(POLICY_SCHEMA, indent=2, ensure_ascii=False) + "\n"


@policy.command("schema")
def policy_schema() -> None:
    """Print the JSON Schema of the policy document."""
    click.echo(schema_text(), nl=False)


# --- certs ---------------------------------------------------------------------------------


@main.group()
def certs() -> None:
    """TLS certificates for the webhook."""


@certs.command("generate")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="DNS name or IP for the certificate (repeatable; default: loopback and the "
    "egress-guard Service names).",
)
@click.option("--days", default=365, show_default=True, type=click.IntRange(1, 3650))
def certs_generate(out: Path, hosts: tuple[str, ...], days: int) -> None:
    """Write a CA (ca.crt, ca.key) and a serving certificate (tls.crt, tls.key) to --out."""
    from webhook.tls import DEFAULT_HOSTS, generate_files

    try:
        files = generate_files(out, hosts or DEFAULT_HOSTS, days=days)
    except (OSError, ValueError) as exc:
        _fail(f"cannot write certificates to {out}: {exc}")
    click.echo(f"CA certificate:      {files.ca_file}")
    click.echo(f"serving certificate: {files.cert_file}")
    click.echo(f"serving key:         {files.key_file}")


if __name__ == "__main__":
    main()


# --- render / controller (issue 4: the reconciler) -----------------------------------------

RENDER_HEADER = """\
# Rendered by egress-guard render: what the controller applies for this policy.
# Access logs: the default Envoy format logs the SNI (requested_server_name); to log the source
# principal too, define a MeshConfig extensionProviders[].envoyFileAccessLog whose logFormat
# adds %DOWNSTREAM_PEER_URI_SAN%, and name that provider in the Telemetry objects below.
"""


@main.command()
@click.option("--policy", "policy_path", required=True, help="Policy file (ConfigMap or bare).")
@click.option(
    "--namespaces",
    default="",
    help="Comma-separated namespaces that exist (default: those the rules name). "
    "The egress namespace is always assumed to exist.",
)
def render(policy_path: str, namespaces: str) -> None:
    """Print the YAML the controller would apply for a policy; no cluster needed."""
    from webhook.core.desired import plan

    try:
        compiled = parse_policy(_read(policy_path), name=policy_path)
    except PolicyError as exc:
        _fail(f"{policy_path}: invalid policy\n{_problems(exc)}")
    names = {n.strip() for n in namespaces.split(",") if n.strip()}
    if not names:
        names = {r.source.namespace for r in compiled.rules if r.source.namespace != "*"}
    names.add(compiled.egress_namespace)
    result = plan(compiled, sorted(names))
    for warning in result.warnings:
        click.echo(f"egress-guard: warning: {warning}", err=True)
    click.echo(RENDER_HEADER + "---\n", nl=False)
    click.echo(yaml.safe_dump_all(list(result.manifests), sort_keys=True), nl=False)


@main.command()
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Default: in-cluster.")
@click.option(
    "--policy-configmap",
    default="egress-guard/egress-guard-policy",
    show_default=True,
    metavar="NS/NAME",
)
@click.option("--lease-namespace", default="egress-guard", show_default=True)
@click.option("--lease-name", default="egress-guard-controller", show_default=True)
@click.option("--identity", default=None, help="Leader-election identity (default: host-pid).")
@click.option("--lease-duration", default=15.0, show_default=True, type=float)
@click.option("--renew-deadline", default=10.0, show_default=True, type=float)
@click.option("--renew-period", default=5.0, show_default=True, type=float)
@click.option("--resync", default=60.0, show_default=True, type=float)
@click.option(
    "--namespace-selector",
    default="",
    help="Label selector: manage only matching namespaces (the egress one included).",
)
@click.option(
    "--metrics-bind",
    default="",
    metavar="HOST:PORT",
    help="Serve /metrics, /healthz and /readyz over plain HTTP here, e.g. 0.0.0.0:9090 in a "
    "pod (default: not served).",
)
@click.option("--log-level", default="info", show_default=True)
def controller(
    kubeconfig: str | None,
    policy_configmap: str,
    lease_namespace: str,
    lease_name: str,
    identity: str | None,
    lease_duration: float,
    renew_deadline: float,
    renew_period: float,
    resync: float,
    namespace_selector: str,
    metrics_bind: str,
    log_level: str,
) -> None:
    """Keep the cluster's Istio objects equal to what the policy ConfigMap asks for."""
    import signal
    import socket
    import threading

    from webhook.admission.logs import configure_logging
    from webhook.kube.client import load_api_client
    from webhook.kube.reconciler import Reconciler

    try:
        ref = ConfigMapRef.parse(policy_configmap)
        probe_address = (
            split_host_port(metrics_bind, option="--metrics-bind") if metrics_bind else None
        )
    except ValueError as exc:
        _fail(str(exc))
    configure_logging(log_level)
    reconciler = Reconciler(
        load_api_client(kubeconfig),
        policy_namespace=ref.namespace,
        policy_name=ref.name,
        lease_namespace=lease_namespace,
        lease_name=lease_name,
        identity=identity or f"{socket.gethostname()}-{os.getpid()}",
        resync=resync,
        lease_duration=lease_duration,
        renew_deadline=renew_deadline,
        renew_period=renew_period,
        namespace_selector=namespace_selector,
    )
    probes = None
    if probe_address is not None:
        from webhook.kube.probing import ProbeServer, probe_app

        try:
            app = probe_app(reconciler, reconciler.metrics.registry)
            probes = ProbeServer(*probe_address, app).start()
        except OSError as exc:
            _fail(f"cannot serve on {metrics_bind}: {exc}")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        reconciler.run(stop)
    finally:
        if probes is not None:
            probes.stop()
