"""List-then-watch caches of Kubernetes objects that survive API restarts and 410 Gone.

The reflector pattern of client-go, small: list to learn the state and its resourceVersion,
watch from there, keep a dict of objects, and on any break (410 Gone when the version is
compacted away, a dropped connection, an API server restart) list again after a backoff.  The
watch is re-opened every ``watch_timeout`` seconds so a silently dead connection cannot stall it.
Callbacks run on the informer's thread and must not block for long.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from webhook.kube.client import response_json

logger = logging.getLogger(__name__)

Key = tuple[str, str]
ListFunction = Callable[..., Any]
# (event type, object): ADDED, MODIFIED, DELETED, or SYNCED after each (re)list
Handler = Callable[[str, Mapping[str, Any]], None]
# called on the informer's thread each time a list or watch fails (API server down, say)
ErrorHandler = Callable[[Exception], None]

INITIAL_BACKOFF = 0.2
MAX_BACKOFF = 10.0


def key_of(obj: Mapping[str, Any]) -> Key:
    """``(namespace, name)`` of an object."""
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


class Informer:
    """A cache of the objects one list function returns, kept current by a watch."""

    def __init__(
        self,
        list_function: ListFunction,
        *args: Any,
        name: str,
        handler: Handler | None = None,
        on_error: ErrorHandler | None = None,
        watch_timeout: int = 60,
        **selectors: Any,
    ) -> None:
        self._list = list_function
        self._args = args
        self._selectors = selectors
        self.name = name
        self._handlers: list[Handler] = [handler] if handler is not None else []
        self._on_error = on_error
        self._watch_timeout = watch_timeout
        self._objects: dict[Key, Mapping[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: watch.Watch | None = None
        self.relists = 0

    # --- reading --------------------------------------------------------------------------

    def items(self) -> list[Mapping[str, Any]]:
        """A snapshot of every cached object."""
        with self._lock:
            return list(self._objects.values())

    def get(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The cached object, if any."""
        with self._lock:
            return self._objects.get((namespace, name))

    @property
    def synced(self) -> bool:
        """True once the first list has been loaded."""
        return self._synced.is_set()

    @property
    def failed(self) -> bool:
        """True when the list/watch thread ended without being asked to stop."""
        thread = self._thread
        return thread is not None and not thread.is_alive() and not self._stop.is_set()

    def wait_synced(self, timeout: float) -> bool:
        """Block until the first list is loaded (or ``timeout``)."""
        return self._synced.wait(timeout)

    def add_handler(self, handler: Handler) -> None:
        """Also call ``handler`` for every event (before ``start``: later ones may miss some)."""
        self._handlers.append(handler)

    # --- running --------------------------------------------------------------------------

    def start(self) -> Informer:
        """Run the list/watch loop in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name=f"informer-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the loop (the current watch ends at its next event or timeout)."""
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()  # type: ignore[no-untyped-call]

    def relist(self) -> bool:
        """List once now, as the loop does after a break; True when the list succeeded.

        The changes and SYNCED are emitted, a failure goes to ``on_error``, as in the loop: a
        caller that does not run the thread (a test, a one-shot tool) drives the cache this way.
        """
        try:
            self._relist()
        except Exception as exc:
            self._report(exc)
            return False
        return True

    def run(self) -> None:
        """List, watch, relist on any break, until stopped."""
        backoff = INITIAL_BACKOFF
        while not self._stop.is_set():
            try:
                version = self._relist()
                backoff = INITIAL_BACKOFF
                while not self._stop.is_set():
                    version = self._watch_from(version)
            except _Gone:
                logger.info("watch expired, relisting", extra={"fields": {"informer": self.name}})
                continue
            except Exception as exc:
                logger.warning(
                    "list/watch failed, retrying",
                    extra={"fields": {"informer": self.name, "error": repr(exc)[:300]}},
                )
                self._report(exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    def _relist(self) -> str:
        body = response_json(self._list(*self._args, _preload_content=False, **self._selectors))
        fresh = {key_of(item): item for item in body.get("items") or ()}
        with self._lock:
            gone = [obj for key, obj in self._objects.items() if key not in fresh]
            changed = [obj for key, obj in fresh.items() if self._objects.get(key) != obj]
            self._objects = fresh
        self.relists += 1
        for obj in gone:
            self._emit("DELETED", obj)
        for obj in changed:
            self._emit("MODIFIED", obj)
        self._synced.set()
        self._emit("SYNCED", {})
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

    def _watch_from(self, version: str) -> str:
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]
        stream = self._watch.stream(  # type: ignore[no-untyped-call]
            self._list,
            *self._args,
            resource_version=version,
            timeout_seconds=self._watch_timeout,
            allow_watch_bookmarks=True,
            **self._selectors,
        )
        try:
            for event in stream:
                kind = event["type"]
                obj = event.get("raw_object") or event["object"]
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone
                    raise ApiException(status=obj.get("code"), reason=str(obj.get("message")))
                version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                if kind == "BOOKMARK":
                    continue
                with self._lock:
                    if kind == "DELETED":
                        self._objects.pop(key_of(obj), None)
                    else:
                        self._objects[key_of(obj)] = obj
                self._emit(kind, obj)
        except ApiException as exc:
            if exc.status == 410:
                raise _Gone from exc
            raise
        return version

    def _emit(self, kind: str, obj: Mapping[str, Any]) -> None:
        for handler in self._handlers:
            try:
                handler(kind, obj)
            except Exception:  # a broken handler must not kill the cache
                logger.exception(
                    "informer handler failed", extra={"fields": {"informer": self.name}}
                )

    def _report(self, exc: Exception) -> None:
        if self._on_error is None:
            return
        try:
            self._on_error(exc)
        except Exception:  # as for handlers: the cache outlives a broken callback
            logger.exception(
                "informer error callback failed", extra={"fields": {"informer": self.name}}
            )


class _Gone(Exception):
    """The watched resourceVersion is too old: list again."""
