"""``egress-guard serve``: the admission webhook daemon, wired from flags.

The command picks the policy source (a file, the ConfigMap through ``webhook.kube``, or the
embedded default) and the cluster view, and hands both to the gunicorn runner, which builds them
in the worker process.
"""

from __future__ import annotations

import os
import tempfile
from functools import partial
from pathlib import Path

import click

from webhook.cli.common import fail, main
from webhook.core.checks import ClusterView
from webhook.core.policy_admission import ClusterObjects
from webhook.policy_runtime import (
    EMBEDDED_POLICY,
    FilePolicySource,
    PolicySource,
    PolicyStore,
    StaticPolicySource,
    embedded_policy_text,
)
from webhook.settings import (
    DEFAULT_BIND,
    DEFAULT_CONNECTION_LIFETIME_SECONDS,
    DEFAULT_DECISION_CACHE_SIZE,
    DEFAULT_KEEPALIVE_SECONDS,
    ConfigMapRef,
    Settings,
)


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


def sidecar_view(settings: Settings, store: PolicyStore) -> ClusterView:
    """The cluster's Sidecars, and the addresses of the namespaces ``store``'s policy names for
    its gateways, from informer caches (``webhook.kube``), started and synced."""
    from webhook.kube.client import load_api_client
    from webhook.kube.cluster_view import SidecarView

    kubeconfig = str(settings.kubeconfig) if settings.kubeconfig else None
    return SidecarView(load_api_client(kubeconfig)).start().follow(store)


def listed_objects(settings: Settings) -> ClusterObjects:
    """Every governed object, listed from the API when a policy edit is judged."""
    from webhook.kube.audit_listing import ListedObjects
    from webhook.kube.client import load_api_client

    kubeconfig = str(settings.kubeconfig) if settings.kubeconfig else None
    return ListedObjects(load_api_client(kubeconfig))


def source_for(settings: Settings) -> PolicySource:
    """The policy source ``settings`` ask for: a file, a ConfigMap, or the embedded default."""
    if settings.policy_file is not None:
        return FilePolicySource(settings.policy_file, interval=settings.policy_poll_interval)
    if settings.policy_configmap is not None:
        from webhook.kube.client import load_api_client
        from webhook.kube.policy_watch import ConfigMapPolicySource

        ref = settings.policy_configmap
        kubeconfig = str(settings.kubeconfig) if settings.kubeconfig else None
        return ConfigMapPolicySource(
            ref.namespace, ref.name, connect=partial(load_api_client, kubeconfig)
        )
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
@click.option(
    "--connection-lifetime",
    default=DEFAULT_CONNECTION_LIFETIME_SECONDS,
    show_default=True,
    type=click.FloatRange(0),
    help="With several workers, close keep-alive connections after this many seconds so clients "
    "reconnect and spread evenly again (0: never).",
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
    help="Watch the cluster's Sidecars, and the Pods and Services of the egress namespace, for "
    "the checks that depend on them (default: on with --policy-configmap, off otherwise).",
)
@click.option(
    "--security-team-user",
    "security_team_users",
    multiple=True,
    metavar="USER",
    help="May delete the policy ConfigMap (repeatable); nobody else may.",
)
@click.option(
    "--security-team-group",
    "security_team_groups",
    multiple=True,
    metavar="GROUP",
    help="Members may delete the policy ConfigMap (repeatable).",
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
    connection_lifetime: float,
    policy_poll_interval: float,
    log_level: str,
    log_allowed: bool,
    decision_cache_size: int,
    cluster_view: bool | None,
    security_team_users: tuple[str, ...],
    security_team_groups: tuple[str, ...],
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
            connection_lifetime=connection_lifetime,
            policy_poll_interval=policy_poll_interval,
            log_level=log_level,
            log_allowed=log_allowed,
            decision_cache_size=decision_cache_size,
            security_team_users=frozenset(security_team_users),
            security_team_groups=frozenset(security_team_groups),
        )
        settings.host_port  # noqa: B018  (validates --bind before gunicorn does)
    except ValueError as exc:
        fail(str(exc))
    for path in (cert_file, key_file):
        if path is not None and not path.is_file():
            fail(f"no such file: {path}")
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
        # a ConfigMap-fed webhook also judges edits of that ConfigMap against the cluster
        objects_factory=listed_objects if ref is not None else None,
    ).run()
