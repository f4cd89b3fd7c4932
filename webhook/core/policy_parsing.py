"""Turn the security team's YAML into a checked ``Policy``, or say everything that is wrong.

The text is read by ``policy_documents`` (bare policy or a ConfigMap carrying it) and the
exceptions are checked by ``policy_exceptions``.
Checking happens in two passes, schema first (shape and types, via JSON Schema) and then meaning
(host syntax, over-broad wildcards, unknown services, duplicates); every problem of both passes is
reported with its field path, so one edit can fix them all.  Nothing here reads files: callers
pass text.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import jsonschema
import orjson
from publicsuffixlist import PublicSuffixList

from webhook.core.errors import InvalidHostError, PolicyError, PolicyProblem
from webhook.core.external_services import ExternalService, Gateway, Port
from webhook.core.hosts import (
    MAX_HOST_LENGTH,
    VALID_NAME,
    check_dns_name,
    is_wildcard,
    wildcard_suffix,
)
from webhook.core.policy import (
    DEFAULT_EXCLUDED_NAMESPACES,
    WILDCARD_NAMESPACE,
    AllowRule,
    GatewayMode,
    Mode,
    Policy,
    Source,
)
from webhook.core.policy_documents import load_document
from webhook.core.policy_exceptions import build_exceptions, timestamps_as_text
from webhook.core.policy_schema import POLICY_SCHEMA

DEFAULT_SHARED_GATEWAY = Gateway("istio-egressgateway", "", {"istio": "egressgateway"})
DEFAULT_DEDICATED_NAME = "egress-{service}"
DEFAULT_DEDICATED_SELECTOR = {"gateway-name": "egress-{service}", "gateway-type": "egress"}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@cache
def _validator() -> jsonschema.Draft202012Validator:
    # Host lists can hold 100k names; descending into each costs seconds, and the semantic pass
    # checks every host anyway, so the working schema leaves their items to it.
    schema = copy.deepcopy(POLICY_SCHEMA)
    del schema["properties"]["externalServices"]["items"]["properties"]["hosts"]["items"]
    return jsonschema.Draft202012Validator(schema)


@cache
def _public_suffixes() -> PublicSuffixList:
    return PublicSuffixList()


def is_overbroad(host: str) -> bool:
    """``*`` and wildcards directly over a public suffix (``*.com``, ``*.co.uk``, ``*.github.io``).

    Such a pattern lets anyone who registers a name under it receive the traffic.
    """
    if host == "*":
        return True
    if not is_wildcard(host):
        return False
    suffix = wildcard_suffix(host)
    return "." not in suffix or bool(_public_suffixes().is_public(suffix))


def _pointer(path: Any) -> str:
    return "/" + "/".join(str(p) for p in path) if path else ""


def parse_policy(text: str | bytes, *, name: str = "", now: dt.datetime | None = None) -> Policy:
    """Parse and check policy YAML (bare or in a ConfigMap); raise PolicyError listing problems.

    ``now`` is the instant exceptions are measured from for ``maxExceptionDays``; without it
    (offline tools) their length is not checked.  The core never reads a clock.
    """
    return build_policy(load_document(text), name=name, now=now)


def revision_of(document: Mapping[str, Any]) -> str:
    """A short content hash: identical policies share a revision, so caches survive no-op edits."""
    canonical = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:12]


def build_policy(
    document: Mapping[str, Any], *, name: str = "", now: dt.datetime | None = None
) -> Policy:
    """Check a parsed policy mapping and compile it; raise PolicyError listing every problem."""
    document = timestamps_as_text(document)
    problems = [
        PolicyProblem(_pointer(err.absolute_path), err.message)
        for err in sorted(_validator().iter_errors(document), key=lambda e: list(e.path))
    ]
    if problems:
        # the semantic pass assumes the shape is right; report shape errors alone
        raise PolicyError(problems)
    builder = _Builder(document, now=now)
    policy = builder.build(name=name)
    if builder.problems:
        raise PolicyError(builder.problems)
    return policy


class _Builder:
    """One semantic pass over a schema-valid document, collecting problems as it goes."""

    def __init__(self, doc: Mapping[str, Any], *, now: dt.datetime | None = None) -> None:
        self.doc = doc
        self.now = now
        self.problems: list[PolicyProblem] = []
        self.cluster_domain = str(doc.get("clusterDomain", "cluster.local")).lower().rstrip(".")

    def problem(self, path: str, message: str) -> None:
        self.problems.append(PolicyProblem(path, message))

    def build(self, *, name: str) -> Policy:
        egress = self.doc["egress"]
        egress_ns = egress["namespace"]
        gateway_spec = egress.get("gateway") or {}
        services = self._services(egress_ns, gateway_spec, egress.get("gatewayLabels") or {})
        rules = self._rules(services)
        exceptions = build_exceptions(self.doc, services, now=self.now, problem=self.problem)
        # an exception's source may widen a label rule or an account rule while it is live
        self._check_labels_beside_accounts(
            [(f"/allow/{j}", r.name, r.source, r.services) for j, r in enumerate(rules)]
            + [
                (f"/exceptions/{i}", e.name, source, e.services)
                for i, e in enumerate(exceptions)
                for source in e.sources
            ]
        )
        excluded = frozenset(self.doc.get("excludedNamespaces", DEFAULT_EXCLUDED_NAMESPACES))
        if egress_ns in excluded:
            self.problem(
                "/egress/namespace",
                f"the egress namespace {egress_ns!r} must not be excluded from the guardrail",
            )
        major, minor = (int(p) for p in str(self.doc.get("istioVersion", "1.30")).split("."))
        return Policy(
            mode=Mode(self.doc.get("mode", "enforce")),
            egress_namespace=egress_ns,
            services=services,
            rules=rules,
            excluded_namespaces=excluded,
            cluster_domain=self.cluster_domain,
            trust_domain=str(self.doc.get("trustDomain", "cluster.local")),
            istio_version=(major, minor),
            controller_users=frozenset((self.doc.get("controller") or {}).get("users", ())),
            network_policies=bool(self.doc.get("networkPolicies", False)),
            security_team_users=frozenset((self.doc.get("securityTeam") or {}).get("users", ())),
            security_team_groups=frozenset((self.doc.get("securityTeam") or {}).get("groups", ())),
            internal_networks=tuple(
                self._addresses("/internalNetworks", self.doc.get("internalNetworks", ()))
            ),
            revision=revision_of(self.doc),
            name=name,
            exceptions=exceptions,
            max_exception_days=self.doc.get("maxExceptionDays"),
        )

    def _gateway(
        self, service: str, override: Mapping[str, Any], defaults: Mapping[str, Any]
    ) -> tuple[str, dict[str, str]]:
        dedicated = GatewayMode(defaults.get("mode", "shared")) is GatewayMode.DEDICATED
        base_name = DEFAULT_DEDICATED_NAME if dedicated else DEFAULT_SHARED_GATEWAY.name
        base_selector = (
            DEFAULT_DEDICATED_SELECTOR if dedicated else dict(DEFAULT_SHARED_GATEWAY.selector)
        )
        gw_name = str(override.get("name", defaults.get("name", base_name)))
        selector = override.get("selector", defaults.get("selector", base_selector))
        return gw_name.replace("{service}", service), {
            str(k): str(v).replace("{service}", service) for k, v in selector.items()
        }

    def _services(
        self,
        egress_ns: str,
        gateway_default: Mapping[str, Any],
        pod_labels: Mapping[str, str],
    ) -> dict[str, ExternalService]:
        services: dict[str, ExternalService] = {}
        host_owner: dict[str, str] = {}
        for i, item in enumerate(self.doc["externalServices"]):
            path = f"/externalServices/{i}"
            name = item["name"]
            if name in services:
                self.problem(f"{path}/name", f"duplicate external service name {name!r}")
                continue
            hosts = self._hosts(path, item["hosts"], name, host_owner)
            ports = self._ports(path, item["ports"])
            origination = (item.get("tlsOrigination") or {}).get("port")
            if origination is not None and not any(p.protocol == "HTTP" for p in ports):
                self.problem(
                    f"{path}/tlsOrigination",
                    "TLS origination needs an HTTP port for the application to send plain HTTP",
                )
            addresses = self._addresses(f"{path}/addresses", item.get("addresses", ()))
            gw_name, selector = self._gateway(name, item.get("gateway", {}), gateway_default)
            if not _DNS_LABEL.match(gw_name):
                self.problem(
                    f"{path}/gateway/name",
                    f"gateway Service name {gw_name!r} is not a valid DNS label",
                )
            services[name] = ExternalService(
                name=name,
                hosts=tuple(hosts),
                ports=tuple(ports),
                gateway=Gateway(
                    gw_name,
                    egress_ns,
                    selector,
                    self.cluster_domain,
                    {str(k): str(v).replace("{service}", name) for k, v in pod_labels.items()},
                ),
                tls_origination_port=origination,
                addresses=tuple(addresses),
            )
        return services

    def _hosts(self, path: str, raw: list[str], service: str, owner: dict[str, str]) -> list[str]:
        hosts: list[str] = []
        valid = VALID_NAME.fullmatch
        # is_cluster_internal() inlined: for a normalized name (wildcards too) it is this
        domain = self.cluster_domain
        dot_domain = "." + domain
        for j, host in enumerate(raw):
            if type(host) is str and len(host) <= MAX_HOST_LENGTH and "." in host and valid(host):
                # already normalized and valid (the common case): skip check_dns_name's work
                name = host
            elif not isinstance(host, str):
                self.problem(f"{path}/hosts/{j}", f"{host!r} is not a string")
                continue
            else:
                try:
                    name = check_dns_name(host, require_dot=True)
                except InvalidHostError as exc:
                    self.problem(f"{path}/hosts/{j}", exc.why + f" ({host!r})")
                    continue
            if name[0] == "*" and is_overbroad(name):
                self.problem(
                    f"{path}/hosts/{j}", f"{name!r} is over-broad: it covers a whole public suffix"
                )
                continue
            if name == domain or name.endswith(dot_domain):
                self.problem(
                    f"{path}/hosts/{j}", f"{name!r} is cluster-internal, not an external service"
                )
                continue
            if name in owner:
                self.problem(
                    f"{path}/hosts/{j}",
                    f"host {name!r} is already listed by service {owner[name]!r}",
                )
                continue
            owner[name] = service
            hosts.append(name)
        return hosts

    def _ports(self, path: str, raw: list[Mapping[str, Any]]) -> list[Port]:
        ports: list[Port] = []
        seen: set[int] = set()
        for j, item in enumerate(raw):
            number = int(item["number"])
            if number in seen:
                self.problem(f"{path}/ports/{j}/number", f"duplicate port {number}")
                continue
            seen.add(number)
            ports.append(Port(number, str(item["protocol"])))
        return ports

    def _addresses(self, path: str, raw: Any) -> list[str]:
        addresses: list[str] = []
        for j, item in enumerate(raw):
            try:
                net = ipaddress.ip_network(str(item), strict=False)
            except ValueError:
                self.problem(f"{path}/{j}", f"{item!r} is not an IP or CIDR")
                continue
            if net.prefixlen == 0:
                self.problem(f"{path}/{j}", f"{item!r} covers every address")
                continue
            addresses.append(str(net))
        return addresses

    def _rules(self, services: Mapping[str, ExternalService]) -> tuple[AllowRule, ...]:
        rules: list[AllowRule] = []
        names: set[str] = set()
        known = set(services)
        all_names = {s["name"] for s in self.doc["externalServices"]}
        for i, item in enumerate(self.doc.get("allow", ())):
            path = f"/allow/{i}"
            src = item["from"]
            rule_name = item.get("name") or f"allow-{i}"
            if rule_name in names:
                self.problem(f"{path}/name", f"duplicate rule name {rule_name!r}")
            names.add(rule_name)
            targets: list[str] = []
            for j, target in enumerate(item["to"]):
                if target not in all_names:
                    listed = ", ".join(sorted(all_names)) or "none"
                    self.problem(
                        f"{path}/to/{j}",
                        f"unknown external service {target!r} (defined: {listed})",
                    )
                elif target in known and target not in targets:
                    targets.append(target)
            if src.get("serviceAccount"):
                self._check_identity_enforceable(path, targets, services)
            rules.append(
                AllowRule(
                    name=rule_name,
                    source=Source(
                        namespace=src["namespace"],
                        workload_labels=dict(src.get("workloadLabels") or {}),
                        service_account=src.get("serviceAccount"),
                    ),
                    services=tuple(targets),
                )
            )
        return tuple(rules)

    def _check_labels_beside_accounts(
        self, grants: Sequence[tuple[str, str, Source, tuple[str, ...]]]
    ) -> None:
        # Workload labels are checked only by the sidecar (the mTLS identity carries none, so
        # the gateway admits the rule's whole namespace), a service account only by the gateway
        # (a sidecar route cannot select pods by account, so the sidecar routes every pod the
        # rule's labels select).  A labels-only grant beside an account grant for the same
        # service and namespace lets a pod with neither through, unless the account grant's
        # labels imply the labels-only grant's.  Grants are (path, name, source, services).
        for path, account_name, src, account_services in grants:
            if src.service_account is None:
                continue
            for _, label_name, other, label_services in grants:
                if not other.workload_labels or other.service_account is not None:
                    continue
                if WILDCARD_NAMESPACE not in (src.namespace, other.namespace) and (
                    src.namespace != other.namespace
                ):
                    continue
                if other.workload_labels.items() <= src.workload_labels.items():
                    continue
                shared = [s for s in account_services if s in label_services]
                if not shared:
                    continue
                labels = ", ".join(f"{k}={v}" for k, v in sorted(other.workload_labels.items()))
                self.problem(
                    f"{path}/from/serviceAccount" if path.startswith("/allow") else path,
                    f"rule {account_name!r} narrows by serviceAccount, which only the "
                    f"egress gateway checks, and rule {label_name!r} narrows by "
                    "workloadLabels, which only the sidecar checks, for the same namespace and "
                    "service "
                    f"({', '.join(shared)}): together a pod with neither the labels nor the "
                    f"account gets through; give {label_name!r} a serviceAccount too, or "
                    f"give {account_name!r} the workloadLabels {labels} as well",
                )
                break

    def _check_identity_enforceable(
        self, path: str, targets: Sequence[str], services: Mapping[str, ExternalService]
    ) -> None:
        # A service account is checked only at the egress gateway, on the mTLS identity.
        # Wildcard hosts on TLS ports pass through the gateway unterminated (no fixed SNI can
        # stand for them), so the gateway never sees the identity and every pod the rule's
        # namespace and labels select would get through.
        for name in targets:
            svc = services[name]
            wild = [h for h in svc.hosts if is_wildcard(h)]
            if wild and any(p.is_tls for p in svc.ports):
                self.problem(
                    f"{path}/from/serviceAccount",
                    f"service {name} has wildcard hosts ({', '.join(wild)}) on TLS ports, which "
                    "pass through the egress gateway without the client identity, so a "
                    "serviceAccount cannot be enforced for them; narrow by workloadLabels or "
                    "list exact hosts",
                )
