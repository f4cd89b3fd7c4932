"""pytest fixtures giving e2e tests a real kube-apiserver, kubectl and our webhook in it.

Why: admission behaviour (what kubectl shows when egress-guard denies, which requests
reach the webhook at all) can only be checked against a real API server. The fixtures
start one per session from pinned binaries (``tools/build.sh``; the first cold build
takes ~5 min and prints its progress), or use an existing cluster when
``EGRESS_GUARD_E2E_EXISTING=1`` and ``KUBECONFIG`` names its kubeconfig (the webhook is
then assumed to be installed by the chart).

Fixtures:
    control_plane       session cluster; the webhook is registered in it once any test
                        has requested ``webhook``
    webhook             session: our ``egress-guard serve`` registered in control_plane, as
                        the chart's webhook ServiceAccount with exactly the chart's RBAC
    injector            session: Istio's own sidecar injector registered in control_plane as
                        istiod registers it (namespaces labelled ``istio-injection=enabled``
                        or ``istio.io/rev=default``)
    controller_kubeconfig  session: kubeconfig of the chart's controller ServiceAccount,
                        holding exactly the chart's RBAC (``webhook.kube.rbac``)
    kubectl             session: ``kubectl(*args, input=..., check=...)`` for control_plane
    bare_control_plane  session: a separate cluster that never has a webhook
    throwaway_control_plane  function: a cluster of its own for one test
    new_namespace       factory: ``new_namespace(prefix=None, labels=None)`` -> unique name
    namespace           a fresh namespace for this test in control_plane
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import (
    CONTROLLER_ACCOUNT,
    ControlPlane,
    Injector,
    Kubectl,
    Tools,
    Webhook,
    build_tools,
    controller_grant,
    create_namespace,
    existing_cluster_kubeconfig,
    grant,
    service_account_kubeconfig,
)

E2E_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Cluster:
    """What a test needs of a cluster, whether the harness started it or not."""

    kubeconfig: Path
    kubectl: Kubectl
    # The harness' own control plane; None for an existing cluster.
    plane: ControlPlane | None

    @property
    def existing(self) -> bool:
        return self.plane is None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Safety net for tests that forget `pytestmark = pytest.mark.e2e`: `-m "not e2e"` must
    # never start a control plane.
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


def _uncaptured(request: pytest.FixtureRequest) -> AbstractContextManager[Any]:
    """Lets long setup steps print progress straight to the terminal."""
    capman = request.config.pluginmanager.getplugin("capturemanager")
    if capman is None:
        return nullcontext()
    return capman.global_and_fixture_disabled()  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def e2e_tools(request: pytest.FixtureRequest) -> Tools:
    """The pinned binaries; built on first use (cold ~5 min on 2 cores), cached after."""
    with _uncaptured(request):
        return build_tools()


def _start_plane(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str
) -> ControlPlane:
    tools: Tools = request.getfixturevalue("e2e_tools")
    plane = ControlPlane(tmp_path_factory.mktemp(name), tools)
    with _uncaptured(request):
        plane.start()
    return plane


@pytest.fixture(scope="session")
def control_plane(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    existing = existing_cluster_kubeconfig()
    if existing is not None:
        found = shutil.which("kubectl")
        binary = Path(found) if found else request.getfixturevalue("e2e_tools").kubectl
        yield Cluster(existing, Kubectl(binary, existing), None)
        return
    plane = _start_plane(request, tmp_path_factory, "control-plane")
    try:
        yield Cluster(plane.kubeconfig, plane.kubectl, plane)
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def bare_control_plane(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    """A control plane of its own in which no webhook is ever registered."""
    if existing_cluster_kubeconfig() is not None:
        pytest.skip("needs a harness control plane without webhooks")
    plane = _start_plane(request, tmp_path_factory, "bare-control-plane")
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def throwaway_control_plane(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[ControlPlane]:
    """A control plane for one test (~3 s), free to be left with any registrations."""
    if existing_cluster_kubeconfig() is not None:
        pytest.skip("needs a harness control plane")
    tools: Tools = request.getfixturevalue("e2e_tools")
    plane = ControlPlane(tmp_path / "control-plane", tools)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def webhook(
    request: pytest.FixtureRequest,
    control_plane: Cluster,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Webhook | None]:
    """Our webhook serving control_plane; None on an existing cluster (chart-installed)."""
    if control_plane.plane is None:
        yield None
        return
    hook = Webhook(control_plane.plane, tmp_path_factory.mktemp("webhook"))
    with _uncaptured(request):
        hook.start()
    try:
        yield hook
    finally:
        hook.stop()


@pytest.fixture(scope="session")
def injector(
    request: pytest.FixtureRequest,
    control_plane: Cluster,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Injector | None]:
    """Istio's injector serving control_plane; None on an existing cluster (istiod's own)."""
    if control_plane.plane is None:
        yield None
        return
    hook = Injector(control_plane.plane, tmp_path_factory.mktemp("injector"))
    with _uncaptured(request):
        hook.start()
    try:
        yield hook
    finally:
        hook.stop()


@pytest.fixture(scope="session")
def controller_kubeconfig(control_plane: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig as the chart's controller ServiceAccount, bound to exactly the chart's
    controller rules; an existing cluster's own kubeconfig (its chart made the account)."""
    if control_plane.plane is None:
        return control_plane.kubeconfig
    grant(control_plane.kubectl, [controller_grant()])
    path = tmp_path_factory.mktemp("controller") / "kubeconfig"
    return service_account_kubeconfig(control_plane.plane, CONTROLLER_ACCOUNT, path)


@pytest.fixture(scope="session")
def kubectl(control_plane: Cluster) -> Kubectl:
    """``kubectl(*args, input=None, check=False)`` -> CompletedProcess with stdout/stderr."""
    return control_plane.kubectl


@pytest.fixture
def new_namespace(
    control_plane: Cluster, request: pytest.FixtureRequest
) -> Iterator[Callable[..., str]]:
    """Factory: ``new_namespace(prefix=None, labels=None)`` creates a fresh namespace."""
    created: list[str] = []

    def make(prefix: str | None = None, *, labels: Mapping[str, str] | None = None) -> str:
        name = create_namespace(
            control_plane.kubectl, prefix or f"e2e-{request.node.name}", labels=labels
        )
        created.append(name)
        return name

    yield make
    if control_plane.existing:
        # A real cluster finishes namespace deletion; the harness one would not.
        for name in created:
            control_plane.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture
def namespace(new_namespace: Callable[..., str]) -> str:
    """A fresh, uniquely named namespace in control_plane for this test."""
    return new_namespace()
