"""The policy ConfigMap as a ``PolicySource``, for the webhook server and the Reconciler alike.

One ConfigMap (namespace/name) is watched with a resourceVersion-aware informer, so API server
restarts and 410 Gone only cause a relist.  Every new version of the policy (``data`` key
``policy.yaml`` or ``policy.json``, or ``binaryData`` key ``policy.json.gz`` or
``policy.yaml.gz``, decompressed with a size cap) goes to the sink (the ``PolicyStore``); when
the store rejects it (the policy does not validate, or cannot be decoded) a Warning Event is
recorded on the ConfigMap, so ``kubectl describe configmap`` tells the security team why their
edit is not in force, while the store keeps the last good policy.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client

from webhook.core.errors import PolicyError
from webhook.core.policy_documents import POLICY_KEYS, stored_policy
from webhook.kube.informing import Informer, ListFunction
from webhook.policy_runtime import PolicySink, ReloadResult

logger = logging.getLogger(__name__)

EVENT_REASON = "PolicyRejected"
DELETED_REASON = "PolicyDeleted"
COMPONENT = "egress-guard"
MAX_EVENT_MESSAGE = 1024

# (the ConfigMap, why its policy was rejected)
RejectionHook = Callable[[Mapping[str, Any], str], None]
# (the ConfigMap, the problem, the Event reason: EVENT_REASON or DELETED_REASON)
EventHook = Callable[[Mapping[str, Any], str, str], None]


class ConfigMapPolicySource:
    """Watches one ConfigMap and feeds its policy text to the sink it is started with.

    ``connect`` builds the API client when the source starts (in the gunicorn worker, after the
    fork); a client that cannot be built is reported to the sink, and the service keeps answering
    with readiness failing.  ``on_rejected`` replaces the Warning Event of a rejected policy,
    ``on_event`` every Warning Event this source would post (tests, quiet tools); ``lister``
    replaces the API's list/watch call of ConfigMaps, so tests answer it locally.
    """

    def __init__(
        self,
        namespace: str,
        name: str,
        *,
        connect: Callable[[], client.ApiClient],
        initial_timeout: float = 30.0,
        on_rejected: RejectionHook | None = None,
        on_event: EventHook | None = None,
        lister: ListFunction | None = None,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.origin = f"configmap:{namespace}/{name}"
        self.initial_timeout = initial_timeout
        self.delivered_version = ""
        self._connect = connect
        self._on_rejected = on_rejected
        self._on_event_hook = on_event
        self._lister = lister
        self._core: client.CoreV1Api | None = None
        self._informer: Informer | None = None
        self._sink: PolicySink | None = None
        # set while list/watch fails, so an outage is reported once and its end noticed
        self.unreachable = False

    def start(self, sink: PolicySink) -> None:
        """Watch in a daemon thread; wait (bounded) for the first list."""
        informer = self.attach(sink)
        if informer is None:
            return
        informer.start()
        # not fatal: the service answers with readiness failing until a policy arrives
        if self.initial_timeout > 0:
            informer.wait_synced(self.initial_timeout)

    def attach(self, sink: PolicySink) -> Informer | None:
        """Build the informer that feeds ``sink``, without running it (``start`` runs it).

        None when no API client can be built; the sink has been told.
        """
        self._sink = sink
        try:
            self._core = client.CoreV1Api(self._connect())
        except Exception as exc:
            sink.fail(self.origin, f"cannot reach the Kubernetes API: {exc!r}")
            logger.exception("policy ConfigMap watch not started")
            return None
        self._informer = Informer(
            self._lister or self._core.list_namespaced_config_map,
            self.namespace,
            name=f"policy-{self.namespace}-{self.name}",
            handler=self._on_event,
            on_error=self._on_error,
            field_selector=f"metadata.name={self.name}",
        )
        return self._informer

    def stop(self) -> None:
        """Stop watching; idempotent."""
        if self._informer is not None:
            self._informer.stop()

    @property
    def synced(self) -> bool:
        """True once the ConfigMap has been listed."""
        return self._informer is not None and self._informer.synced

    @property
    def failed(self) -> bool:
        """True when the watch thread ended without being asked to stop."""
        return self._informer is not None and self._informer.failed

    def _on_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        sink = self._sink
        if sink is None:
            return
        if kind == "SYNCED":
            items = self._informer.items() if self._informer is not None else []
            if not items:
                sink.fail(self.origin, f"ConfigMap {self.namespace}/{self.name} not found")
            elif self.unreachable:
                # back after an outage with the ConfigMap unchanged: deliver it again so the
                # sink learns that its source is up
                self.delivered_version = ""
                self.deliver(items[0], sink)
            self.unreachable = False
            return
        if kind == "DELETED":
            self.delivered_version = ""
            problem = f"ConfigMap {self.namespace}/{self.name} was deleted"
            self._record_event(obj, problem, reason=DELETED_REASON)
            sink.fail(self.origin, problem)
            return
        self.deliver(obj, sink)

    def _on_error(self, exc: Exception) -> None:
        # the informer retries with backoff; the sink hears of the outage once, not every retry
        sink = self._sink
        if sink is not None and not self.unreachable:
            self.unreachable = True
            sink.fail(self.origin, f"cannot read the ConfigMap from the API: {exc!r}"[:500])

    def deliver(self, configmap: Mapping[str, Any], sink: PolicySink) -> ReloadResult | None:
        """Hand one version of the ConfigMap to ``sink``; report it when it is rejected.

        None when this version was already delivered.
        """
        meta = configmap.get("metadata") or {}
        version = str(meta.get("resourceVersion") or "")
        if version and version == self.delivered_version:
            return None
        self.delivered_version = version
        self.unreachable = False
        try:
            stored = stored_policy(configmap.get("data"), configmap.get("binaryData"))
        except PolicyError as exc:
            # two keys, or a compressed key that cannot be read: the last good policy stays
            problem = "; ".join(str(p) for p in exc.problems)
            self._rejected(configmap, problem)
            return sink.fail(self.origin, problem)
        if stored is None:
            problem = f"the ConfigMap has no policy key (one of {', '.join(POLICY_KEYS)})"
            self._rejected(configmap, problem)
            return sink.fail(self.origin, problem)
        result = sink.update(stored.text, origin=self.origin)
        if not result.ok:
            self._rejected(configmap, "; ".join(result.problems) or "the policy is invalid")
        return result

    def _rejected(self, configmap: Mapping[str, Any], problem: str) -> None:
        if self._on_rejected is not None:
            self._on_rejected(configmap, problem)
        else:
            self._record_event(configmap, problem)

    def _record_event(
        self, configmap: Mapping[str, Any], problem: str, *, reason: str = EVENT_REASON
    ) -> None:
        if self._on_event_hook is not None:
            self._on_event_hook(configmap, problem, reason)
            return
        if self._core is None:
            return
        meta = configmap.get("metadata") or {}
        stamp = dt.datetime.now(dt.UTC)
        lead = "policy rejected" if reason == EVENT_REASON else "policy unavailable"
        message = f"{lead}, the last good policy stays in force: {problem}"[:MAX_EVENT_MESSAGE]
        body: Any = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{self.name}.", "namespace": self.namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "namespace": self.namespace,
                "name": self.name,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "type": "Warning",
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
            "firstTimestamp": stamp.isoformat(),
            "lastTimestamp": stamp.isoformat(),
            "count": 1,
        }
        try:
            self._core.create_namespaced_event(self.namespace, body)
        except client.ApiException as exc:  # no RBAC for events must not stop the watch
            logger.warning(
                "cannot record the rejection event", extra={"fields": {"error": str(exc)[:300]}}
            )
