"""The policy ConfigMap as a live source, for the webhook server and the controller alike.

One ConfigMap (namespace/name) is watched with a resourceVersion-aware informer, so API server
restarts and 410 Gone only cause a relist.  Every new version of ``data["policy.yaml"]`` goes to
the caller's sink; when the sink rejects it (the policy does not validate) a Warning Event is
recorded on the ConfigMap, so ``kubectl describe configmap`` tells the security team why their
edit is not in force, while the sink keeps the last good policy.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from kubernetes import client

from webhook.core.policy_parsing import POLICY_KEY
from webhook.kube.client import load_api_client
from webhook.kube.informing import Informer

logger = logging.getLogger(__name__)

EVENT_REASON = "PolicyRejected"
DELETED_REASON = "PolicyDeleted"
COMPONENT = "egress-guard"
MAX_EVENT_MESSAGE = 1024


class LoadResult(Protocol):
    """What a sink answers (``webhook.admission.policy_store.ReloadResult`` fits)."""

    @property
    def ok(self) -> bool:
        """Whether the text became (or already was) the policy in force."""
        ...

    @property
    def problems(self) -> tuple[str, ...]:
        """Why it was rejected."""
        ...


class Sink(Protocol):
    """Receives the policy text (``PolicyStore`` fits)."""

    def update(self, text: str | bytes, *, origin: str) -> Any:
        """Compile and swap in ``text``, keeping the last good policy on failure."""
        ...

    def fail(self, origin: str, problem: str) -> Any:
        """The source cannot deliver a policy right now."""
        ...


class PolicyWatch:
    """Watches one ConfigMap and feeds its ``policy.yaml`` to ``sink``."""

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        name: str,
        *,
        sink: Sink,
        record_events: bool = True,
    ) -> None:
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.sink = sink
        self.record_events = record_events
        self.origin = f"configmap:{namespace}/{name}"
        self.delivered_version = ""
        # set while list/watch fails, so an outage is reported once and its end noticed
        self.unreachable = False
        self.informer = Informer(
            self.core.list_namespaced_config_map,
            namespace,
            name=f"policy-{namespace}-{name}",
            handler=self._on_event,
            on_error=self._on_error,
            field_selector=f"metadata.name={name}",
        )

    def start(self) -> PolicyWatch:
        """Watch in a daemon thread."""
        self.informer.start()
        return self

    def stop(self) -> None:
        """Stop watching."""
        self.informer.stop()

    def _on_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        if kind == "SYNCED":
            items = self.informer.items()
            if not items:
                self.sink.fail(self.origin, f"ConfigMap {self.namespace}/{self.name} not found")
            elif self.unreachable:
                # back after an outage with the ConfigMap unchanged: deliver it again so the
                # sink learns that its source is up
                self.delivered_version = ""
                self.deliver(items[0])
            self.unreachable = False
            return
        if kind == "DELETED":
            self.delivered_version = ""
            problem = f"ConfigMap {self.namespace}/{self.name} was deleted"
            self._event(obj, problem, reason=DELETED_REASON)
            self.sink.fail(self.origin, problem)
            return
        self.deliver(obj)

    def _on_error(self, exc: Exception) -> None:
        # the informer retries with backoff; the sink hears of the outage once, not every retry
        if not self.unreachable:
            self.unreachable = True
            self.sink.fail(self.origin, f"cannot read the ConfigMap from the API: {exc!r}"[:500])

    def deliver(self, configmap: Mapping[str, Any]) -> Any:
        """Hand one version of the ConfigMap to the sink; record an Event when it is rejected."""
        meta = configmap.get("metadata") or {}
        version = str(meta.get("resourceVersion") or "")
        if version and version == self.delivered_version:
            return None
        self.delivered_version = version
        self.unreachable = False
        data = configmap.get("data") or {}
        if POLICY_KEY not in data:
            problem = f"the ConfigMap has no key {POLICY_KEY!r}"
            self._event(configmap, problem)
            return self.sink.fail(self.origin, problem)
        result = self.sink.update(str(data[POLICY_KEY]), origin=self.origin)
        if result is not None and not getattr(result, "ok", True):
            problems = tuple(getattr(result, "problems", ()))
            self._event(configmap, "; ".join(problems) or "the policy is invalid")
        return result

    def _event(
        self, configmap: Mapping[str, Any], problem: str, *, reason: str = EVENT_REASON
    ) -> None:
        if not self.record_events:
            return
        meta = configmap.get("metadata") or {}
        stamp = dt.datetime.now(dt.UTC)
        message = ("policy rejected, the last good policy stays in force: " + problem)[
            :MAX_EVENT_MESSAGE
        ]
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
            self.core.create_namespaced_event(self.namespace, body)
        except client.ApiException as exc:  # no RBAC for events must not stop the watch
            logger.warning(
                "cannot record the rejection event", extra={"fields": {"error": str(exc)[:300]}}
            )


def watch_policy_configmap(
    namespace: str,
    name: str,
    *,
    kubeconfig: str | None,
    sink: Sink,
    stop: threading.Event,
    api_client_factory: Callable[[str | None], client.ApiClient] = load_api_client,
) -> None:
    """Feed ``sink`` from the ConfigMap until ``stop`` is set (``ConfigMapPolicySource``'s hook)."""
    watcher = PolicyWatch(api_client_factory(kubeconfig), namespace, name, sink=sink).start()
    try:
        stop.wait()
    finally:
        watcher.stop()
