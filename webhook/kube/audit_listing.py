"""The governed objects as the Kubernetes API lists them, for audits without informers.

The controller's audit, ``egress-guard audit`` and the judging of a policy edit read every
resource whose kind has a check, discovered at each group's preferred version, page by page.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from webhook.core.checks import REGISTRY
from webhook.core.policy_documents import stored_policy
from webhook.kube.client import is_status, response_json

LIST_PAGE = 500


@dataclass(frozen=True, slots=True)
class Resource:
    """A listable resource of a governed kind, as discovery names it."""

    group: str
    version: str
    kind: str
    plural: str

    @property
    def api_version(self) -> str:
        """``group/version`` or ``v1``."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def path(self) -> str:
        """The cluster-wide list path."""
        if not self.group:
            return f"/api/{self.version}/{self.plural}"
        return f"/apis/{self.group}/{self.version}/{self.plural}"


def _get(api_client: client.ApiClient, path: str, **query: str) -> Any:
    method, url, headers, body, post = api_client.param_serialize(
        "GET",
        path,
        query_params=list(query.items()),
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    response = api_client.call_api(method, url, header_params=headers, body=body, post_params=post)
    response.read()  # type: ignore[no-untyped-call]
    if response.status >= 400:
        raise client.ApiException(status=response.status, reason=response.reason)
    return response_json(response)


def governed_resources(api_client: client.ApiClient) -> list[Resource]:
    """The served resources whose (group, kind) has a check, at each group's preferred version."""
    wanted = set(REGISTRY)
    found: list[Resource] = []
    sources = [("", "v1", "/api/v1")]
    for group in client.ApisApi(api_client).get_api_versions().groups or []:
        if any(g == group.name for g, _ in wanted) and group.preferred_version is not None:
            version = group.preferred_version.version
            sources.append((group.name, version, f"/apis/{group.name}/{version}"))
    for group_name, version, path in sources:
        try:
            listing = _get(api_client, path)
        except client.ApiException as exc:
            if is_status(exc, 404, 503):
                continue
            raise
        for item in listing.get("resources", ()):
            name = str(item.get("name", ""))
            kind = str(item.get("kind", ""))
            if "/" in name or (group_name, kind) not in wanted:
                continue
            if "list" in item.get("verbs", ()):
                found.append(Resource(group_name, version, kind, name))
    return found


class ListedObjects:
    """``ObjectSource`` listing every governed resource, page by page (``egress-guard audit``)."""

    def __init__(self, api_client: client.ApiClient, resources: list[Resource] | None = None):
        self.api_client = api_client
        self.resources = resources

    def objects(self) -> Iterator[Mapping[str, Any]]:
        """Every object of every governed resource, with apiVersion and kind filled in."""
        for resource in self.resources or governed_resources(self.api_client):
            token = ""
            while True:
                query = {"limit": str(LIST_PAGE)}
                if token:
                    query["continue"] = token
                page = _get(self.api_client, resource.path, **query)
                for item in page.get("items", ()):
                    # list items carry neither apiVersion nor kind
                    yield {**item, "apiVersion": resource.api_version, "kind": resource.kind}
                token = str((page.get("metadata") or {}).get("continue") or "")
                if not token:
                    break


def read_policy_text(api_client: client.ApiClient, namespace: str, name: str) -> str | bytes:
    """The policy document in the ConfigMap ``namespace/name`` (``egress-guard audit``).

    Any policy key, compressed ones decompressed (``binaryData`` arrives as base64 text);
    empty when there is none, which the parser reports as an empty policy.  Raises
    PolicyError for two keys or an unreadable compressed key.
    """
    configmap = client.CoreV1Api(api_client).read_namespaced_config_map(name, namespace)
    stored = stored_policy(configmap.data, configmap.binary_data)
    return stored.text if stored is not None else ""
