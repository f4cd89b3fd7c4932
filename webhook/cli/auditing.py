"""``egress-guard audit``: judge every governed object in a cluster against a policy.

The policy in force (the policy ConfigMap) by default, or a proposed one (``--policy``), so a CI
job can fail a merge that would leave existing objects in breach.  The judging is the core
``audit``, the one the controller's background audit runs.
"""

from __future__ import annotations

import json
import sys

import click

from webhook.cli.common import (
    AT_OPTION,
    EXIT_BAD_INPUT,
    OUTPUT_OPTION,
    fail,
    instant,
    main,
    problems,
    read_policy,
)
from webhook.core.audit import audit, audit_json, audit_table, exit_code
from webhook.core.errors import PolicyError
from webhook.core.policy_parsing import parse_policy
from webhook.settings import ConfigMapRef


@main.command("audit")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Default: in-cluster.")
@click.option(
    "--policy",
    "policy_path",
    metavar="FILE",
    help="Judge against this proposed policy instead of the one in the cluster's ConfigMap.",
)
@click.option(
    "--policy-configmap",
    default="egress-guard/egress-guard-policy",
    show_default=True,
    metavar="NS/NAME",
    help="The policy in force, read when --policy is not given.",
)
@AT_OPTION
@OUTPUT_OPTION
def audit_command(
    kubeconfig: str | None,
    policy_path: str | None,
    policy_configmap: str,
    at: str | None,
    output: str,
) -> None:
    """Judge every existing governed object; exit 1 when anything breaches, 2 on bad input."""
    from kubernetes.client import ApiException

    from webhook.kube.audit_listing import ListedObjects, read_policy_text
    from webhook.kube.client import load_api_client

    now = instant(at)
    try:
        ref = ConfigMapRef.parse(policy_configmap)
    except ValueError as exc:
        fail(str(exc))
    try:
        api_client = load_api_client(kubeconfig)
    except Exception as exc:
        fail(f"cannot load the cluster credentials: {exc}")
    try:
        origin = policy_path if policy_path is not None else f"ConfigMap {ref}"
        try:
            text: str | bytes
            if policy_path is not None:
                text = read_policy(policy_path)
            else:
                text = read_policy_text(api_client, ref.namespace, ref.name)
            # a proposed policy is validated as the webhook will at apply
            policy = parse_policy(text, name=origin, now=now if policy_path else None)
        except PolicyError as exc:
            fail(f"the policy {origin} is not usable:\n{problems(exc)}")
        result = audit(ListedObjects(api_client).objects(), policy, now=now)
    except ApiException as exc:
        fail(f"the API server refused: {exc.status} {exc.reason}", EXIT_BAD_INPUT)
    if output == "json":
        click.echo(json.dumps(audit_json(result), indent=2, sort_keys=True))
    else:
        table = audit_table(result)
        click.echo(table, nl=not table.endswith("\n"))
    sys.exit(exit_code(result))
