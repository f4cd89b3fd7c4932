"""Wiring the controller to the API server: the Reconciler, its informers, lease and audit.

``Reconciler`` takes every collaborator built (sample-controller's ``NewController``); this is
the one place that builds the real ones from an API client, so the reconciler's module keeps to
the reconcile loop and tests hand in caches held in memory instead.
"""

from __future__ import annotations

import datetime as dt
from functools import partial
from typing import Any

from kubernetes import client

from webhook.core.policy import Policy
from webhook.kube.applying import MANAGED_SELECTOR, ApiWriter, Writer
from webhook.kube.audit_listing import ListedObjects
from webhook.kube.audit_reporting import ApiEventSink, discover_reports
from webhook.kube.auditing import AUDIT_INTERVAL, AuditLoop, AuditMetrics, Auditor, EventLimiter
from webhook.kube.client import MANAGED_KINDS
from webhook.kube.collaborators import Elector, Metrics, WatchedPolicySource
from webhook.kube.informing import Informer
from webhook.kube.leader import LeaseElector
from webhook.kube.reconciler import RESYNC_SECONDS, Reconciler
from webhook.policy_runtime import PolicyStore

LEASE_NAME = "egress-guard-controller"


def new_reconciler(
    api_client: client.ApiClient,
    *,
    policy_source: WatchedPolicySource,
    lease_namespace: str,
    identity: str,
    lease_name: str = LEASE_NAME,
    writer: Writer | None = None,
    metrics: Metrics | None = None,
    resync: float = RESYNC_SECONDS,
    lease_duration: float = 15.0,
    renew_deadline: float = 10.0,
    renew_period: float = 5.0,
    retry_period: float = 2.0,
    namespace_selector: str = "",
    stale_after: float | None = None,
    audit_interval: dt.timedelta | None = AUDIT_INTERVAL,
) -> Reconciler:
    """A Reconciler wired to the API server behind ``api_client`` (nothing started yet).

    ``policy_source`` is the caller's choice (the CLI hands in the policy ConfigMap's source).
    ``audit_interval`` None leaves the background audit out.
    """
    core = client.CoreV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    # an optional label selector limits the Reconciler to some namespaces (staged rollout);
    # objects in other namespaces are then neither written nor pruned
    selector: dict[str, Any] = {"label_selector": namespace_selector} if namespace_selector else {}
    store = PolicyStore()
    metrics = metrics or Metrics()
    elector = LeaseElector(
        api_client,
        lease_namespace,
        lease_name,
        identity,
        lease_duration=lease_duration,
        renew_deadline=renew_deadline,
        renew_period=renew_period,
        retry_period=retry_period,
    )
    audit = (
        new_audit_loop(api_client, store, metrics, elector, audit_interval)
        if audit_interval is not None
        else None
    )
    return Reconciler(
        store=store,
        policy_source=policy_source,
        namespaces=Informer(core.list_namespace, name="namespaces", **selector),
        managed={
            kind: Informer(
                custom.list_cluster_custom_object,
                kind.group,
                kind.version,
                kind.plural,
                name=kind.plural,
                label_selector=MANAGED_SELECTOR,
            )
            for kind in MANAGED_KINDS
        },
        elector=elector,
        writer=writer or ApiWriter(api_client),
        identity=identity,
        metrics=metrics,
        resync=resync,
        stale_after=stale_after,
        audit=audit,
    )


def new_audit_loop(
    api_client: client.ApiClient,
    store: PolicyStore,
    metrics: Metrics,
    elector: Elector,
    interval: dt.timedelta,
) -> AuditLoop:
    """The leader's background audit: listed objects, the store's policy, reports if served.

    The report API is discovered on the audit's own thread, before a pass, until one is served:
    without a report CRD the audit still sets the gauge and posts Events.
    """

    def policy() -> Policy | None:
        loaded = store.current
        return loaded.policy if loaded is not None else None

    auditor = Auditor(
        objects=ListedObjects(api_client),
        policy=policy,
        metrics=AuditMetrics(metrics.registry),
        events=ApiEventSink(api_client),
        limiter=EventLimiter(),
        discover=partial(discover_reports, api_client),
    )
    return AuditLoop(auditor, interval=interval, is_leader=elector.is_leader)
