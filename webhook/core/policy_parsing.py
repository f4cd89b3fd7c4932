"""Turn the security team's YAML into a checked ``Policy``, or say everything that is wrong.

Accepts the bare policy document or a ConfigMap manifest carrying it under ``policy.yaml`` or
``policy.json``.  JSON is YAML too, but libyaml takes ~0.6 s for a 100,000-host list where orjson
takes ~20 ms, so text that parses as JSON is read with orjson and anything else with YAML; a
generated allow list can therefore be shipped as ``policy.json``.
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
import yaml
from publicsuffixlist import PublicSuffixList

from webhook.core.errors import InvalidHostError, PolicyError, PolicyProblem
from webhook.core.hosts import (
    MAX_HOST_LENGTH,
    VALID_NAME,
    check_dns_name,
    covers,
    is_wildcard,
    wildcard_suffix,
)
from webhook.core.policy import (
    DEFAULT_EXCLUDED_NAMESPACES,
    WILDCARD_NAMESPACE,
    AllowRule,
    ExternalService,
    Gateway,
    GatewayMode,
    Mode,
    Policy,
    PolicyException,
    Port,
    Source,
)
from webhook.core.policy_schema import POLICY_SCHEMA

POLICY_KEY = "policy.yaml"
POLICY_JSON_KEY = "policy.json"
# the ConfigMap keys a policy may live under, at most one of them per ConfigMap
POLICY_KEYS = (POLICY_JSON_KEY, POLICY_KEY)
# libyaml's loader is ~10x faster on large host lists; same safe semantics
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
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


def policy_text(data: Mapping[str, Any]) -> str | None:
    """The policy in a ConfigMap's ``data`` (``policy.json`` or ``policy.yaml``); None if neither.

    Raises PolicyError when both keys are present: which one is in force would be a guess.
    """
    present = [key for key in POLICY_KEYS if key in data]
    if len(present) > 1:
        raise PolicyError(
            [
                PolicyProblem(
                    "/data", f"the ConfigMap has both {POLICY_JSON_KEY!r} and {POLICY_KEY!r}"
                )
            ]
        )
    return str(data[present[0]]) if present else None


def _json_document(text: str | bytes) -> Any:
    """The JSON value of ``text``, or None when it is not JSON (then it is read as YAML)."""
    head = text.lstrip()[:1]
    if head not in ("{", b"{"):
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def load_document(text: str | bytes) -> dict[str, Any]:
    """Parse YAML or JSON text into the policy mapping, unwrapping a ConfigMap if it is one."""
    document = _json_document(text)
    if isinstance(document, Mapping):
        return _unwrap([document])
    try:
        docs = [d for d in yaml.load_all(text, Loader=_LOADER) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        raise PolicyError([PolicyProblem("", f"not valid YAML ({where}): {exc}")]) from exc
    if not docs:
        raise PolicyError([PolicyProblem("", "the policy document is empty")])
    return _unwrap(docs)


def _unwrap(docs: list[Any]) -> dict[str, Any]:
    for doc in docs:
        if isinstance(doc, Mapping) and doc.get("kind") == "ConfigMap":
            data = doc.get("data") or {}
            inner = policy_text(data) if isinstance(data, Mapping) else None
            if inner is None:
                continue
            return load_document(inner)
    doc = docs[0]
    if isinstance(doc, Mapping) and doc.get("kind") == "ConfigMap":
        message = f"the ConfigMap has no key {POLICY_KEY!r} (or {POLICY_JSON_KEY!r})"
        raise PolicyError([PolicyProblem("/data", message)])
    if len(docs) > 1:
        raise PolicyError([PolicyProblem("", "expected one policy document, found several")])
    if not isinstance(doc, Mapping):
        raise PolicyError([PolicyProblem("", "the policy must be a mapping")])
    return dict(doc)


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
    document = _timestamps_as_text(document)
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


def _timestamps_as_text(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """YAML reads an unquoted ``expires: 2026-12-24T18:00:00Z`` as a timestamp: keep it text."""
    exceptions = document.get("exceptions")
    if not isinstance(exceptions, list) or not any(
        isinstance(item, Mapping) and isinstance(item.get("expires"), dt.date)
        for item in exceptions
    ):
        return document
    items = [
        {**item, "expires": item["expires"].isoformat()}
        if isinstance(item, Mapping) and isinstance(item.get("expires"), dt.date)
        else item
        for item in exceptions
    ]
    return {**document, "exceptions": items}


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?$")


def parse_instant(text: str) -> dt.datetime:
    """An RFC 3339 instant with its offset, in UTC; ValueError for anything else."""
    if "T" not in text.upper() and " " not in text:
        raise ValueError("a date alone is not an instant: add a time and an offset")
    if not _RFC3339.match(text):
        raise ValueError("expected YYYY-MM-DDTHH:MM:SS[.frac] and Z or +HH:MM")
    value = dt.datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    if value.tzinfo is None:
        raise ValueError("an RFC 3339 instant needs an offset (Z or +HH:MM)")
    return value.astimezone(dt.UTC)


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
        exceptions = self._exceptions(services)
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
        self._check_labels_beside_accounts(rules)
        return tuple(rules)

    def _check_labels_beside_accounts(self, rules: Sequence[AllowRule]) -> None:
        # Workload labels are checked only by the sidecar (the mTLS identity carries none, so
        # the gateway admits the rule's whole namespace), a service account only by the gateway
        # (a sidecar route cannot select pods by account, so the sidecar routes every pod the
        # rule's labels select).  A labels-only rule beside an account rule for the same service
        # and namespace lets a pod with neither through, unless the account rule's labels imply
        # the labels-only rule's.
        for j, account_rule in enumerate(rules):
            src = account_rule.source
            if src.service_account is None:
                continue
            for label_rule in rules:
                other = label_rule.source
                if not other.workload_labels or other.service_account is not None:
                    continue
                if WILDCARD_NAMESPACE not in (src.namespace, other.namespace) and (
                    src.namespace != other.namespace
                ):
                    continue
                if other.workload_labels.items() <= src.workload_labels.items():
                    continue
                shared = [s for s in account_rule.services if s in label_rule.services]
                if not shared:
                    continue
                labels = ", ".join(f"{k}={v}" for k, v in sorted(other.workload_labels.items()))
                self.problem(
                    f"/allow/{j}/from/serviceAccount",
                    f"rule {account_rule.name!r} narrows by serviceAccount, which only the "
                    f"egress gateway checks, and rule {label_rule.name!r} narrows by "
                    "workloadLabels, which only the sidecar checks, for the same namespace and "
                    "service "
                    f"({', '.join(shared)}): together a pod with neither the labels nor the "
                    f"account gets through; give {label_rule.name!r} a serviceAccount too, or "
                    f"give {account_rule.name!r} the workloadLabels {labels} as well",
                )
                break

    def _exceptions(self, services: Mapping[str, ExternalService]) -> tuple[PolicyException, ...]:
        found: list[PolicyException] = []
        names: set[str] = set()
        max_days = self.doc.get("maxExceptionDays")
        all_names = {s["name"] for s in self.doc["externalServices"]}
        for i, item in enumerate(self.doc.get("exceptions", ())):
            path = f"/exceptions/{i}"
            name = item["name"]
            if name in names:
                self.problem(f"{path}/name", f"duplicate exception name {name!r}")
            names.add(name)
            if not item.get("services") and not item.get("hosts"):
                self.problem(path, f"exception {name!r} grants nothing: list services or hosts")
            try:
                expires = parse_instant(str(item["expires"]))
            except ValueError as exc:
                self.problem(
                    f"{path}/expires", f"{item['expires']!r} is not an RFC 3339 instant: {exc}"
                )
                continue
            if max_days is not None and self.now is not None:
                limit = self.now + dt.timedelta(days=int(max_days))
                if expires > limit:
                    self.problem(
                        f"{path}/expires",
                        f"{name!r} runs until {expires.isoformat()}, past the "
                        f"{max_days}-day limit (maxExceptionDays) ending {limit.isoformat()}",
                    )
            granted: list[str] = []
            for j, target in enumerate(item.get("services", ())):
                if target not in all_names:
                    listed = ", ".join(sorted(all_names)) or "none"
                    self.problem(
                        f"{path}/services/{j}",
                        f"unknown external service {target!r} (defined: {listed})",
                    )
                elif target in services and target not in granted:
                    granted.append(target)
            hosts: list[str] = []
            for j, host in enumerate(item.get("hosts", ())):
                try:
                    normal = check_dns_name(host, require_dot=True)
                except InvalidHostError as exc:
                    self.problem(f"{path}/hosts/{j}", exc.why + f" ({host!r})")
                    continue
                covering = sorted(
                    svc.name
                    for svc in services.values()
                    if any(covers(pattern, normal) for pattern in svc.hosts)
                )
                if not covering:
                    self.problem(
                        f"{path}/hosts/{j}",
                        f"no external service covers {normal!r}: describe it under "
                        "externalServices (ports, protocol, gateway) before granting it",
                    )
                    continue
                hosts.append(normal)
                granted.extend(c for c in covering if c not in granted)
            labels = dict(item.get("workloadLabels") or {})
            account = item.get("serviceAccount")
            found.append(
                PolicyException(
                    name=name,
                    sources=tuple(
                        Source(namespace=ns, workload_labels=labels, service_account=account)
                        for ns in item["namespaces"]
                    ),
                    services=tuple(granted),
                    owner=str(item["owner"]),
                    ticket=str(item["ticket"]),
                    expires=expires,
                    reason=str(item.get("reason", "")),
                    hosts=tuple(hosts),
                )
            )
        return tuple(found)

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
