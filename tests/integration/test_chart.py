"""The Helm chart, rendered by the pinned helm: lint, every object's shape, and no drift.

The chart writes out lists that have one source of truth elsewhere: the RBAC rules
(``webhook.kube.rbac``) and the admission rules (``webhook.admission.registration``, derived
from the checks and the generated kinds). These tests render the chart and compare, so neither can
drift. They also render each certificate mode and the values a tenant-minded reviewer would try,
and build the wheel the image installs. helm comes from ``tools/build.sh`` (cached; cold build
~5 min).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from tests.e2e.harness import (
    EXCLUDED_NAMESPACES,
    build_tools,
    webhook_configurations,
)
from webhook.admission.registration import admission_rules, validating_match_conditions
from webhook.core.policy_admission import WEBHOOK_NAME, PolicyConfigMap, registration
from webhook.core.policy_parsing import parse_policy
from webhook.kube import rbac

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "egress-guard"
RELEASE = "egress-guard"
NAMESPACE = "guard-system"

Objects = list[dict[str, Any]]
Render = Callable[..., Objects]


@pytest.fixture(scope="module")
def helm() -> Path:
    """The pinned helm binary."""
    return build_tools(stream_progress=False).helm


def _helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=120, check=False
    )


def _template_args(release: str, namespace: str, extra: Sequence[str]) -> list[str]:
    # no --kube-version: tools/build.sh stamps helm's default Kubernetes version from its
    # client-go, as helm's release builds do, so the chart's kubeVersion >=1.25 passes as is
    return ["template", release, str(CHART), f"--namespace={namespace}", *extra]


@pytest.fixture(scope="module")
def render(helm: Path) -> Render:
    """``render(*helm_args, release=..., namespace=...)`` -> the rendered objects."""

    def run(*extra: str, release: str = RELEASE, namespace: str = NAMESPACE) -> Objects:
        result = _helm(helm, *_template_args(release, namespace, extra))
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return run


@pytest.fixture(scope="module")
def rendered(render: Render) -> Objects:
    """The default install, in a namespace that is not the harness' one."""
    return render()


def _refusal(helm: Path, *extra: str, namespace: str = NAMESPACE) -> str:
    result = _helm(helm, *_template_args(RELEASE, namespace, extra))
    assert result.returncode != 0, "helm rendered values that should have been refused"
    return result.stderr


def _one(objects: Objects, kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def _kinds(objects: Objects) -> list[str]:
    return sorted(o["kind"] for o in objects)


# the policy ConfigMap's webhook rides along in the validating configuration
MAIN_WEBHOOKS = {
    "ValidatingWebhookConfiguration": ("validate.egress-guard.dev", WEBHOOK_NAME),
    "MutatingWebhookConfiguration": ("mutate.egress-guard.dev",),
}


def _webhook(objects: Objects, kind: str, name: str | None = None) -> dict[str, Any]:
    """The configuration's main webhook, or the one called ``name``."""
    config = _one(objects, kind)
    assert tuple(h["name"] for h in config["webhooks"]) == MAIN_WEBHOOKS[kind]
    wanted = name or MAIN_WEBHOOKS[kind][0]
    [hook] = [h for h in config["webhooks"] if h["name"] == wanted]
    return dict(hook)


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _policy(objects: Objects) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(_one(objects, "ConfigMap")["data"]["policy.yaml"])
    return data


def _pem(b64: str) -> bytes:
    return base64.b64decode(b64)


# --- lint and general shape --------------------------------------------------------------


def test_helm_lint_strict_passes(helm: Path) -> None:
    result = _helm(helm, "lint", "--strict", "-n", NAMESPACE, str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_default_install_renders_every_kind_once_per_component(rendered: Objects) -> None:
    assert _kinds(rendered) == sorted(
        ["ServiceAccount"] * 2
        + ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"] * 2
        + ["Deployment"] * 2
        + ["PodDisruptionBudget"] * 2
        + ["Service"] * 2
        + ["Secret", "ConfigMap"]
        + ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"]
    )


def test_every_object_is_named_labelled_and_namespaced_in_the_release(rendered: Objects) -> None:
    cluster_scoped = {
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    }
    for obj in rendered:
        meta = obj["metadata"]
        assert obj["apiVersion"] and meta["name"]
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in meta
        else:
            assert meta["namespace"] == NAMESPACE, obj["kind"]


# --- Deployments -------------------------------------------------------------------------


def test_webhook_deployment_runs_serve_on_the_mounted_certificate(rendered: Objects) -> None:
    deployment = _one(rendered, "Deployment", RELEASE)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    container = _container(deployment)
    assert container["image"] == "egress-guard:0.1.0"
    args = container["args"]
    assert args[0] == "serve"
    assert {
        "--bind=0.0.0.0:8443",
        "--cert-file=/certs/tls.crt",
        "--key-file=/certs/tls.key",
        f"--policy-configmap={NAMESPACE}/{RELEASE}-policy",
    } <= set(args)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    # a subPath mount would never see a rotated certificate
    assert mounts["certs"] == {"name": "certs", "mountPath": "/certs", "readOnly": True}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["certs"]["secret"]["secretName"] == f"{RELEASE}-tls"


@pytest.mark.parametrize("workers", [None, 2])
def test_webhook_workers_write_their_metric_files_to_the_writable_tmp(
    render: Render, workers: int | None
) -> None:
    objects = render(*([f"--set=webhook.workers={workers}"] if workers else []))
    deployment = _one(objects, "Deployment", RELEASE)
    container = _container(deployment)
    assert f"--workers={workers or 1}" in container["args"]
    # the root filesystem is read-only: with several workers, the server's private metrics
    # directory is made under /tmp, the emptyDir
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["tmp"]["mountPath"] == "/tmp"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["tmp"]


def test_values_refuse_no_webhook_worker(helm: Path) -> None:
    assert "schema" in _refusal(helm, "--set=webhook.workers=0")


def test_webhook_probes_are_https_readyz_and_healthz(rendered: Objects) -> None:
    container = _container(_one(rendered, "Deployment", RELEASE))
    ready, live = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert (ready["path"], ready["scheme"], ready["port"]) == ("/readyz", "HTTPS", "https")
    assert (live["path"], live["scheme"], live["port"]) == ("/healthz", "HTTPS", "https")
    assert container["ports"] == [{"name": "https", "containerPort": 8443, "protocol": "TCP"}]


def test_controller_deployment_elects_a_leader_in_the_release_namespace(rendered: Objects) -> None:
    deployment = _one(rendered, "Deployment", f"{RELEASE}-controller")
    assert deployment["spec"]["replicas"] == 2
    spec = deployment["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == f"{RELEASE}-controller"
    args = _container(deployment)["args"]
    assert args[0] == "controller"
    assert {
        f"--policy-configmap={NAMESPACE}/{RELEASE}-policy",
        f"--lease-namespace={NAMESPACE}",
        f"--lease-name={RELEASE}-controller",
        "--identity=$(POD_NAME)",
    } <= set(args)


def test_controller_serves_probes_and_metrics_over_http_on_a_named_port(
    rendered: Objects,
) -> None:
    container = _container(_one(rendered, "Deployment", f"{RELEASE}-controller"))
    assert "--metrics-bind=0.0.0.0:9090" in container["args"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]
    ready, live = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    # kubelet's default scheme is HTTP: the controller has no serving certificate
    assert ready == {"path": "/readyz", "port": "metrics"}
    assert live == {"path": "/healthz", "port": "metrics"}


def test_controller_metrics_address_is_configurable(render: Render) -> None:
    objects = render("--set=controller.listenAddress=[::]", "--set=controller.port=9100")
    container = _container(_one(objects, "Deployment", f"{RELEASE}-controller"))
    assert "--metrics-bind=[::]:9100" in container["args"]
    assert container["ports"][0]["containerPort"] == 9100
    port = _one(objects, "Service", f"{RELEASE}-controller")["spec"]["ports"][0]
    assert (port["port"], port["targetPort"]) == (9100, "metrics")


@pytest.mark.parametrize("value", ["controller.port=80", "controller.listenAddress="])
def test_values_refuse_an_unusable_controller_address(helm: Path, value: str) -> None:
    assert "schema" in _refusal(helm, f"--set={value}")


@pytest.mark.parametrize("name", [RELEASE, f"{RELEASE}-controller"])
def test_pods_meet_the_restricted_pod_security_standard(rendered: Objects, name: str) -> None:
    spec = _one(rendered, "Deployment", name)["spec"]["template"]["spec"]
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 65532
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    container = spec["containers"][0]
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not spec.get("hostNetwork") and not spec.get("hostPID")
    # gunicorn's heartbeat files need a writable /tmp on the read-only root filesystem
    tmp = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["tmp"]
    assert tmp == "/tmp"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


@pytest.mark.parametrize("name", [RELEASE, f"{RELEASE}-controller"])
def test_replicas_spread_and_a_disruption_budget_keeps_one(rendered: Objects, name: str) -> None:
    deployment = _one(rendered, "Deployment", name)
    template = deployment["spec"]["template"]
    term = template["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    labels = template["metadata"]["labels"]
    assert term["labelSelector"]["matchLabels"].items() <= labels.items()
    pdb = _one(rendered, "PodDisruptionBudget", name)
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # webhook and controller pods must not satisfy each other's selectors
    other = next(d for d in rendered if d["kind"] == "Deployment" and d["metadata"]["name"] != name)
    other_labels = other["spec"]["template"]["metadata"]["labels"]
    assert not pdb["spec"]["selector"]["matchLabels"].items() <= other_labels.items()


def test_pods_get_no_istio_sidecar(rendered: Objects) -> None:
    # the API server calls the webhook directly: an injected proxy with STRICT mTLS would refuse it
    for deployment in (d for d in rendered if d["kind"] == "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["sidecar.istio.io/inject"] == "false"


def test_service_sends_443_and_metrics_to_the_webhook_pods(rendered: Objects) -> None:
    service = _one(rendered, "Service", RELEASE)
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert (ports["https"]["port"], ports["https"]["targetPort"]) == (443, "https")
    assert ports["metrics"]["targetPort"] == "https"
    pod_labels = _one(rendered, "Deployment", RELEASE)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_controller_service_exposes_metrics_of_the_controller_pods_only(rendered: Objects) -> None:
    service = _one(rendered, "Service", f"{RELEASE}-controller")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    selector = service["spec"]["selector"].items()
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"].items()
        for d in rendered
        if d["kind"] == "Deployment"
    }
    assert selector <= pods[f"{RELEASE}-controller"]
    assert not selector <= pods[RELEASE]


# --- RBAC: the same rules as webhook/kube/rbac.py ------------------------------------------


@pytest.mark.parametrize(
    ("kind", "name", "rules"),
    [
        ("ClusterRole", f"{RELEASE}-webhook", rbac.webhook_cluster_rules()),
        ("Role", f"{RELEASE}-webhook", rbac.webhook_namespace_rules()),
        ("ClusterRole", f"{RELEASE}-controller", rbac.controller_cluster_rules()),
        ("Role", f"{RELEASE}-controller", rbac.controller_namespace_rules()),
    ],
)
def test_rbac_rules_are_those_of_rbac_py(
    rendered: Objects, kind: str, name: str, rules: list[dict[str, Any]]
) -> None:
    assert _one(rendered, kind, name)["rules"] == rules


@pytest.mark.parametrize(
    ("binding", "role"), [("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")]
)
def test_roles_are_bound_to_the_accounts_the_pods_run_as(
    rendered: Objects, binding: str, role: str
) -> None:
    accounts = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["serviceAccountName"]
        for d in rendered
        if d["kind"] == "Deployment"
    }
    service_accounts = {o["metadata"]["name"] for o in rendered if o["kind"] == "ServiceAccount"}
    assert set(accounts.values()) == service_accounts
    bound = {}
    for obj in (o for o in rendered if o["kind"] == binding):
        assert obj["roleRef"]["kind"] == role
        _one(rendered, role, obj["roleRef"]["name"])
        [subject] = obj["subjects"]
        assert subject["kind"] == "ServiceAccount" and subject["namespace"] == NAMESPACE
        bound[obj["roleRef"]["name"]] = subject["name"]
    assert bound == {
        f"{RELEASE}-webhook": accounts[RELEASE],
        f"{RELEASE}-controller": accounts[f"{RELEASE}-controller"],
    }


def test_no_role_grants_secrets_or_wildcards(rendered: Objects) -> None:
    for obj in (o for o in rendered if o["kind"] in ("ClusterRole", "Role")):
        for rule in obj["rules"]:
            assert "secrets" not in rule["resources"]
            assert "*" not in rule["resources"] + rule["verbs"] + rule["apiGroups"]


# --- webhook registrations -----------------------------------------------------------------


@pytest.mark.parametrize("gateway_api", [True, False])
def test_admission_rules_are_the_derived_rules(render: Render, gateway_api: bool) -> None:
    objects = render(f"--set=webhook.gatewayAPI={str(gateway_api).lower()}")
    expected = admission_rules(gateway_api=gateway_api)
    assert _webhook(objects, "ValidatingWebhookConfiguration")["rules"] == expected["validating"]
    assert _webhook(objects, "MutatingWebhookConfiguration")["rules"] == expected["mutating"]


@pytest.mark.parametrize("gateway_api", [True, False])
def test_webhooks_are_the_harness_webhooks_but_for_address_and_namespaces(
    render: Render, gateway_api: bool
) -> None:
    objects = render(f"--set=webhook.gatewayAPI={str(gateway_api).lower()}")
    harness = webhook_configurations("https://127.0.0.1:1", b"", gateway_api=gateway_api)
    for expected in harness:
        chart = _webhook(objects, expected["kind"])
        wanted = expected["webhooks"][0]
        for hook in (chart, wanted):
            del hook["clientConfig"]
            hook["namespaceSelector"]["matchExpressions"][0]["values"] = ["<excluded>"]
        assert chart == wanted


@pytest.mark.parametrize(
    ("name", "team"),
    [("", ""), ("guard-policy", ""), ("", "users={alice}"), ("", "groups={sec}")],
)
def test_policy_configmap_webhook_is_the_core_registration(
    render: Render, name: str, team: str
) -> None:
    extra = [f"--set=webhook.securityTeam.{team}"] if team else []
    objects = render(f"--set=policyConfigMap.name={name}", *extra)
    hook = _webhook(objects, "ValidatingWebhookConfiguration", WEBHOOK_NAME)
    main = _webhook(objects, "ValidatingWebhookConfiguration")
    # deletions are sent only once a security team may make them
    wanted = registration(
        PolicyConfigMap(NAMESPACE, name or f"{RELEASE}-policy"), guard_delete=bool(team)
    )
    assert {k: hook[k] for k in wanted} == wanted
    # the same service, and fails closed: a deletion must never slip through an outage
    assert hook["clientConfig"] == main["clientConfig"]
    for key in ("failurePolicy", "sideEffects", "admissionReviewVersions", "matchPolicy"):
        assert hook[key] == main[key]
    assert set(hook) == set(wanted) | {"clientConfig", *(k for k in main if k not in wanted)}


def test_security_team_values_become_webhook_flags(render: Render) -> None:
    objects = render(
        "--set=webhook.securityTeam.users={alice,bob}",
        "--set=webhook.securityTeam.groups={sec-team}",
    )
    args = _container(_one(objects, "Deployment", RELEASE))["args"]
    assert [a for a in args if a.startswith("--security-team")] == [
        "--security-team-user=alice",
        "--security-team-user=bob",
        "--security-team-group=sec-team",
    ]


@pytest.mark.parametrize(
    ("kind", "path"),
    [("ValidatingWebhookConfiguration", "/validate"), ("MutatingWebhookConfiguration", "/mutate")],
)
def test_webhooks_fail_closed_and_call_the_service(rendered: Objects, kind: str, path: str) -> None:
    hook = _webhook(rendered, kind)
    assert hook["failurePolicy"] == "Fail"
    assert hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["matchPolicy"] == "Equivalent"
    assert 1 <= hook["timeoutSeconds"] <= 30
    assert hook["clientConfig"]["service"] == {
        "name": RELEASE,
        "namespace": NAMESPACE,
        "path": path,
        "port": 443,
    }
    # no opt-out a tenant controls: no object selector; the only match conditions are the
    # derived ones, which skip an UPDATE only when nothing a check reads changed
    assert not hook.get("objectSelector")
    expected = validating_match_conditions() if kind.startswith("Validating") else None
    assert hook.get("matchConditions") == expected


@pytest.mark.parametrize("kind", ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"])
def test_only_the_immutable_name_label_excludes_namespaces(rendered: Objects, kind: str) -> None:
    selector = _webhook(rendered, kind)["namespaceSelector"]
    assert set(selector) == {"matchExpressions"}
    [expression] = selector["matchExpressions"]
    assert expression["key"] == "kubernetes.io/metadata.name"
    assert expression["operator"] == "NotIn"
    # the release namespace instead of the harness' fixed one, never tenant namespaces
    harness = set(EXCLUDED_NAMESPACES) - {"egress-guard"}
    assert set(expression["values"]) == harness | {NAMESPACE}


def test_webhook_timeout_is_configurable(render: Render) -> None:
    objects = render("--set=webhook.timeoutSeconds=5")
    assert _webhook(objects, "ValidatingWebhookConfiguration")["timeoutSeconds"] == 5


@pytest.mark.parametrize(
    "value",
    [
        "webhook.failurePolicy=Ignore",
        "webhook.objectSelector.matchLabels.x=y",
        "webhook.timeoutSeconds=31",
    ],
)
def test_values_cannot_weaken_the_registration(helm: Path, value: str) -> None:
    assert "schema" in _refusal(helm, f"--set={value}")


def test_installing_into_default_is_refused(helm: Path) -> None:
    # the release namespace is exempt from the webhooks: "default" would exempt most tenants
    assert "namespace of its own" in _refusal(helm, namespace="default")


# --- policy ConfigMap --------------------------------------------------------------------


def test_rendered_policy_lets_the_controller_and_excludes_the_release_namespace(
    rendered: Objects,
) -> None:
    policy = _policy(rendered)
    parsed = parse_policy(yaml.safe_dump(policy), name="rendered")
    assert f"system:serviceaccount:{NAMESPACE}:{RELEASE}-controller" in parsed.controller_users
    assert parsed.is_excluded(NAMESPACE)
    assert not parsed.is_excluded("test-app")
    assert {"kube-system", "istio-system"} <= parsed.excluded_namespaces


def test_rendered_policy_keeps_the_teams_own_users_and_exclusions(render: Render) -> None:
    objects = render(
        "--set=policy.controller.users[0]=alice",
        "--set=policy.excludedNamespaces[0]=legacy",
    )
    policy = _policy(objects)
    assert policy["controller"]["users"] == [
        "alice",
        f"system:serviceaccount:{NAMESPACE}:{RELEASE}-controller",
    ]
    assert "legacy" in policy["excludedNamespaces"] and NAMESPACE in policy["excludedNamespaces"]


def test_without_the_controller_no_identity_is_trusted(render: Render) -> None:
    objects = render("--set=controller.enabled=false")
    assert "controller" not in _policy(objects)
    assert [d["metadata"]["name"] for d in objects if d["kind"] == "Deployment"] == [RELEASE]
    assert not [o for o in objects if o["metadata"]["name"].endswith("-controller")]


def test_an_externally_managed_policy_is_not_rendered_but_watched(render: Render) -> None:
    objects = render("--set=policyConfigMap.create=false", "--set=policyConfigMap.name=team")
    assert not [o for o in objects if o["kind"] == "ConfigMap"]
    args = _container(_one(objects, "Deployment", RELEASE))["args"]
    assert f"--policy-configmap={NAMESPACE}/team" in args


def test_an_invalid_policy_is_refused_at_install(helm: Path) -> None:
    stderr = _refusal(helm, "--set=policy.allow[0].from.namespace=Not_A_Namespace")
    assert "/policy/allow/0" in stderr


# --- certificates ------------------------------------------------------------------------


def test_helm_mode_secret_chains_to_the_ca_bundle_and_names_the_service(
    rendered: Objects,
) -> None:
    secret = _one(rendered, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    assert "ca.key" not in secret["data"]
    ca = x509.load_pem_x509_certificate(_pem(secret["data"]["ca.crt"]))
    cert = x509.load_pem_x509_certificate(_pem(secret["data"]["tls.crt"]))
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    dns = set(names.value.get_values_for_type(x509.DNSName))
    assert f"{RELEASE}.{NAMESPACE}.svc" in dns
    assert f"{RELEASE}.{NAMESPACE}.svc.cluster.local" in dns
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        bundle = _pem(_webhook(rendered, kind)["clientConfig"]["caBundle"])
        assert x509.load_pem_x509_certificates(bundle) == [ca]


def test_cert_manager_mode_injects_the_ca_of_the_mounted_certificate(render: Render) -> None:
    objects = render("--set=certManager.enabled=true")
    assert "Secret" not in _kinds(objects)
    serving = _one(objects, "Certificate", f"{RELEASE}-serving")
    volumes = _one(objects, "Deployment", RELEASE)["spec"]["template"]["spec"]["volumes"]
    secret_name = {v["name"]: v for v in volumes}["certs"]["secret"]["secretName"]
    assert serving["spec"]["secretName"] == secret_name
    assert f"{RELEASE}.{NAMESPACE}.svc" in serving["spec"]["dnsNames"]
    issuer = serving["spec"]["issuerRef"]
    assert _one(objects, issuer["kind"], issuer["name"])["spec"]["ca"]
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        config = _one(objects, kind)
        annotation = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        assert annotation == f"{NAMESPACE}/{RELEASE}-serving"
        assert "caBundle" not in config["webhooks"][0]["clientConfig"]


def test_cert_manager_can_use_the_clusters_issuer(render: Render) -> None:
    objects = render(
        "--set=certManager.enabled=true",
        "--set=certManager.issuerRef.name=corp-ca",
        "--set=certManager.issuerRef.kind=ClusterIssuer",
    )
    assert "Issuer" not in _kinds(objects)
    assert _one(objects, "Certificate")["spec"]["issuerRef"]["kind"] == "ClusterIssuer"


def test_existing_mode_uses_the_given_secret_and_ca(tmp_path: Path, render: Render) -> None:
    out = tmp_path / "certs"
    egress_guard = Path(sys.executable).parent / "egress-guard"
    subprocess.run(
        [
            "bash",
            str(ROOT / "certs" / "generate.sh"),
            "-n",
            NAMESPACE,
            "-s",
            RELEASE,
            "-o",
            str(out),
        ],
        env={"EGRESS_GUARD": str(egress_guard), "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        timeout=60,
    )
    secret = yaml.safe_load((out / "secret.yaml").read_text())
    assert secret["type"] == "kubernetes.io/tls" and "ca.key" not in secret["data"]
    objects = render(f"--values={out / 'values-certs.yaml'}")
    assert "Secret" not in _kinds(objects)
    volumes = _one(objects, "Deployment", RELEASE)["spec"]["template"]["spec"]["volumes"]
    assert {v["name"]: v for v in volumes}["certs"]["secret"]["secretName"] == secret["metadata"][
        "name"
    ]
    ca = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate(_pem(secret["data"]["tls.crt"]))
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert f"{RELEASE}.{NAMESPACE}.svc" in names.value.get_values_for_type(x509.DNSName)
    bundle = _webhook(objects, "ValidatingWebhookConfiguration")["clientConfig"]["caBundle"]
    assert x509.load_pem_x509_certificates(_pem(bundle)) == [ca]


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        (["--set=certs.mode=existing", "--set=certs.existing.secretName=x"], "caBundle"),
        (
            [
                "--set=certManager.enabled=true",
                "--set=certs.mode=existing",
                "--set=certs.existing.secretName=x",
                "--set=certs.existing.caBundle=-----BEGIN CERTIFICATE-----",
            ],
            "exclusive",
        ),
    ],
)
def test_certificate_sources_that_cannot_work_are_refused(
    helm: Path, values: list[str], fragment: str
) -> None:
    assert fragment in _refusal(helm, *values)


# --- metrics -----------------------------------------------------------------------------


def test_service_monitor_scrapes_the_metrics_port_verifying_the_ca(render: Render) -> None:
    objects = render("--set=metrics.serviceMonitor.enabled=true")
    monitor = _one(objects, "ServiceMonitor", RELEASE)
    [endpoint] = monitor["spec"]["endpoints"]
    service = _one(objects, "Service", RELEASE)
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["scheme"] == "https" and endpoint["path"] == "/metrics"
    assert endpoint["tlsConfig"]["ca"]["secret"] == {"name": f"{RELEASE}-tls", "key": "ca.crt"}
    assert endpoint["tlsConfig"]["serverName"] == f"{RELEASE}.{NAMESPACE}.svc"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )


def test_controller_service_monitor_scrapes_plain_http_of_the_controller_service(
    render: Render,
) -> None:
    objects = render("--set=metrics.serviceMonitor.enabled=true")
    monitor = _one(objects, "ServiceMonitor", f"{RELEASE}-controller")
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint == {
        "port": "metrics",
        "path": "/metrics",
        "scheme": "http",
        "interval": "30s",
        "scrapeTimeout": "10s",
    }
    labels = _one(objects, "Service", f"{RELEASE}-controller")["metadata"]["labels"].items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels
    webhook_labels = _one(objects, "Service", RELEASE)["metadata"]["labels"].items()
    assert not monitor["spec"]["selector"]["matchLabels"].items() <= webhook_labels


def test_no_controller_service_monitor_without_the_controller(render: Render) -> None:
    objects = render("--set=metrics.serviceMonitor.enabled=true", "--set=controller.enabled=false")
    assert [m["metadata"]["name"] for m in objects if m["kind"] == "ServiceMonitor"] == [RELEASE]


def test_no_service_monitor_by_default(rendered: Objects) -> None:
    assert "ServiceMonitor" not in _kinds(rendered)


# --- names -------------------------------------------------------------------------------


def test_a_release_with_another_name_prefixes_every_object(render: Render) -> None:
    objects = render(release="blue")
    deployment = _one(objects, "Deployment", "blue-egress-guard")
    assert (
        _webhook(objects, "ValidatingWebhookConfiguration")["clientConfig"]["service"]["name"]
        == _one(objects, "Service", "blue-egress-guard")["metadata"]["name"]
    )
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "blue-egress-guard"
    users = _policy(objects)["controller"]["users"]
    assert users == [f"system:serviceaccount:{NAMESPACE}:blue-egress-guard-controller"]


# --- the wheel the image installs --------------------------------------------------------


def test_the_wheel_carries_the_package_data_and_the_cli(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(
        ROOT / "webhook", source / "webhook", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        if (ROOT / name).is_file():
            shutil.copy(ROOT / name, source / name)
        else:
            (source / name).write_text("egress-guard\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    [wheel] = (tmp_path / "dist").glob("egress_guard-0.1.0-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        data = {p.relative_to(ROOT).as_posix() for p in (ROOT / "webhook" / "data").iterdir()}
        assert data and data <= names
        assert {
            "webhook/py.typed",
            "webhook/cli/__init__.py",
            "webhook/core/policy_schema.py",
        } <= names
        [entry_points] = [n for n in names if n.endswith("entry_points.txt")]
        assert "egress-guard = webhook.cli:main" in archive.read(entry_points).decode()


@pytest.mark.parametrize("release", ["egress-guard", "blue", "zz-top"])
def test_the_mutating_configuration_sorts_before_istios_injector(
    render: Render, release: str
) -> None:
    # Kubernetes calls mutating webhooks by configuration name: egress-guard's must see Pods
    # before the injector ("istio-sidecar-injector", "istio-revision-tag-default"...) does
    [mutating] = [o for o in render(release=release) if o["kind"] == "MutatingWebhookConfiguration"]
    name = mutating["metadata"]["name"]
    assert name < "istio", name
    assert release in name
