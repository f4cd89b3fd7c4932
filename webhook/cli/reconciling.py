"""``egress-guard controller``: the Reconciler daemon, wired from flags.

The command builds the Reconciler with its real collaborators (``new_reconciler``), serves its
probes when asked, and runs it until SIGTERM or SIGINT.
"""

from __future__ import annotations

import os

import click

from webhook.cli.common import fail, main
from webhook.settings import ConfigMapRef, split_host_port


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
    "--audit-interval",
    default=600.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds between background audit passes (also run on every policy revision and at "
    "each exception expiry); 0 turns the audit off.",
)
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
    audit_interval: float,
    namespace_selector: str,
    metrics_bind: str,
    log_level: str,
) -> None:
    """Keep the cluster's Istio objects equal to what the policy ConfigMap asks for, and audit
    the existing objects against it (leader only)."""
    import datetime as dt
    import signal
    import socket
    import threading

    from webhook.admission.logs import configure_logging
    from webhook.kube.client import load_api_client
    from webhook.kube.policy_watch import ConfigMapPolicySource
    from webhook.kube.reconciler_wiring import new_reconciler

    try:
        ref = ConfigMapRef.parse(policy_configmap)
        probe_address = (
            split_host_port(metrics_bind, option="--metrics-bind") if metrics_bind else None
        )
    except ValueError as exc:
        fail(str(exc))
    configure_logging(log_level)
    api_client = load_api_client(kubeconfig)
    reconciler = new_reconciler(
        api_client,
        # no wait for the first policy: the probes and the lease election start meanwhile
        policy_source=ConfigMapPolicySource(
            ref.namespace, ref.name, connect=lambda: api_client, initial_timeout=0
        ),
        lease_namespace=lease_namespace,
        lease_name=lease_name,
        identity=identity or f"{socket.gethostname()}-{os.getpid()}",
        resync=resync,
        lease_duration=lease_duration,
        renew_deadline=renew_deadline,
        renew_period=renew_period,
        namespace_selector=namespace_selector,
        audit_interval=dt.timedelta(seconds=audit_interval) if audit_interval else None,
    )
    probes = None
    if probe_address is not None:
        from webhook.kube.probing import ProbeServer, probe_app

        try:
            app = probe_app(reconciler, reconciler.metrics.registry)
            probes = ProbeServer(*probe_address, app).start()
        except OSError as exc:
            fail(f"cannot serve on {metrics_bind}: {exc}")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        reconciler.run(stop)
    finally:
        if probes is not None:
            probes.stop()
