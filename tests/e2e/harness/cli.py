"""``python -m tests.e2e.harness up|status|down|tools``: the harness for humans.

``up`` starts etcd + kube-apiserver (+ the webhook and Istio's injector) detached and records
what it started in a state file, so ``down`` stops exactly those processes and nothing else::

    python -m tests.e2e.harness up [--no-webhook] [--no-injector] [--policy FILE]
                                   [--identity admin]
    python -m tests.e2e.harness status
    python -m tests.e2e.harness down

``make e2e-up`` / ``make e2e-down`` / ``make e2e-status`` run these.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from tests.e2e.harness.common import DEFAULT_STATE_DIR, HarnessError, say
from tests.e2e.harness.control_plane import ControlPlane
from tests.e2e.harness.injection import Injector
from tests.e2e.harness.processes import ManagedProcess
from tests.e2e.harness.serving import IDENTITIES, Webhook
from tests.e2e.harness.tools import build_tools


def _state_path(state_dir: Path) -> Path:
    return state_dir / "state.json"


def _load_processes(state_dir: Path) -> list[ManagedProcess]:
    path = _state_path(state_dir)
    if not path.is_file():
        return []
    state = json.loads(path.read_text())
    return [ManagedProcess.from_state(p) for p in state.get("processes", [])]


def _remove_generated(state_dir: Path) -> None:
    for name in (
        "etcd",
        "pki",
        "injector",
        "kube-cache",
        "kubeconfig",
        "webhook-kubeconfig",
        "state.json",
    ):
        target = state_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def cmd_up(args: argparse.Namespace) -> int:
    state_dir: Path = args.dir
    running = [p for p in _load_processes(state_dir) if p.alive()]
    if running:
        names = ", ".join(f"{p.name} (pid {p.pid})" for p in running)
        raise HarnessError(f"already up in {state_dir}: {names}; run `make e2e-down` first")
    # Fresh data for every `up`; logs are kept (appended) for debugging.
    _remove_generated(state_dir)
    started = time.monotonic()
    tools = build_tools()
    plane = ControlPlane(state_dir, tools, detach=True)
    plane.start()
    webhook: Webhook | None = None
    if args.webhook:
        webhook = Webhook(
            plane,
            state_dir,
            policy_file=args.policy,
            identity=args.identity,
            detach=True,
        )
        try:
            webhook.start()
        except BaseException:
            plane.stop()
            raise
    injector: Injector | None = None
    # --no-webhook keeps meaning the bare control plane: no admission webhook of any kind.
    if args.webhook and args.injector:
        injector = Injector(plane, state_dir / "injector", detach=True)
        try:
            injector.start()
        except BaseException:
            if webhook is not None:
                webhook.stop()
            plane.stop()
            raise
    processes = plane.processes() + [
        component.process
        for component in (webhook, injector)
        if component is not None and component.process is not None
    ]
    state = {
        **plane.to_state(),
        "processes": [p.to_state() for p in processes],
        "webhook": webhook.base_url if webhook else None,
        "injector": injector.base_url if injector else None,
    }
    _state_path(state_dir).write_text(json.dumps(state, indent=2) + "\n")
    say(f"up in {time.monotonic() - started:.1f}s; logs in {plane.logs_dir}")
    print(f"export KUBECONFIG={plane.kubeconfig}")
    print(f"export PATH={tools.dir}:$PATH")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    state_dir: Path = args.dir
    processes = _load_processes(state_dir)
    if not processes:
        say(f"nothing to stop ({_state_path(state_dir)} not found)")
        return 0
    # Reverse start order: injector, webhook, kube-apiserver, etcd.
    for process in reversed(processes):
        if process.alive():
            say(f"stopping {process.name} (pid {process.pid})")
            process.stop()
    _state_path(state_dir).unlink(missing_ok=True)
    # The data and credentials of a stopped cluster are useless; logs stay for debugging.
    _remove_generated(state_dir)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state_dir: Path = args.dir
    path = _state_path(state_dir)
    if not path.is_file():
        print("down")
        return 1
    state = json.loads(path.read_text())
    healthy = True
    for process in _load_processes(state_dir):
        alive = process.alive()
        healthy &= alive
        print(f"{process.name:15} pid {process.pid:<8} {'running' if alive else 'DEAD'}")
    print(f"server          {state['server']}")
    print(f"kubeconfig      {state['kubeconfig']}")
    if state.get("webhook"):
        print(f"webhook         {state['webhook']}")
    if state.get("injector"):
        print(f"istio injector  {state['injector']}")
    return 0 if healthy else 1


def cmd_tools(_: argparse.Namespace) -> int:
    print(build_tools().dir)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.e2e.harness", description="The e2e control plane, for humans."
    )
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_STATE_DIR, help="state, data and logs (.e2e/)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start etcd + kube-apiserver (+ the webhook, the injector)")
    up.add_argument("--no-webhook", dest="webhook", action="store_false", help="control plane only")
    up.add_argument(
        "--no-injector",
        dest="injector",
        action="store_false",
        help="no Istio sidecar injector (Pods then reach validation without a proxy)",
    )
    up.add_argument("--policy", type=Path, help="serve this policy file instead of the ConfigMap")
    up.add_argument(
        "--identity",
        choices=IDENTITIES,
        default="serviceaccount",
        help="credentials the webhook uses to read the cluster",
    )
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop what `up` started").set_defaults(func=cmd_down)
    sub.add_parser("status", help="show what is running").set_defaults(func=cmd_status)
    sub.add_parser("tools", help="build the pinned tools, print their dir").set_defaults(
        func=cmd_tools
    )
    args = parser.parse_args(argv)
    args.dir = args.dir.resolve()
    try:
        return int(args.func(args))
    except HarnessError as exc:
        say(f"error: {exc}")
        return 1
