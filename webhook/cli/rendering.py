"""``egress-guard render``: the objects the Reconciler would apply for a policy, as YAML."""

from __future__ import annotations

import click
import yaml

from webhook.cli.common import AT_OPTION, fail, instant, main, problems, read_policy
from webhook.core.errors import PolicyError
from webhook.core.explain import label_scoped_notes
from webhook.core.policy_parsing import parse_policy

RENDER_HEADER = """\
# Rendered by egress-guard render: what the Reconciler applies for this policy.
# Access logs: the default Envoy format logs the SNI (requested_server_name); to log the source
# principal too, define a MeshConfig extensionProviders[].envoyFileAccessLog whose logFormat
# adds %DOWNSTREAM_PEER_URI_SAN%, and name that provider in the Telemetry objects below.
"""


@main.command()
@click.option("--policy", "policy_path", required=True, help="Policy file (ConfigMap or bare).")
@AT_OPTION
@click.option(
    "--namespaces",
    default="",
    help="Comma-separated namespaces that exist (default: those the rules name). "
    "The egress namespace is always assumed to exist.",
)
def render(policy_path: str, at: str | None, namespaces: str) -> None:
    """Print the YAML the Reconciler would apply for a policy; no cluster needed."""
    from webhook.core.desired import generate

    try:
        declared = parse_policy(read_policy(policy_path), name=policy_path)
    except PolicyError as exc:
        fail(f"{policy_path}: invalid policy\n{problems(exc)}")
    # what the Reconciler applies at that instant: the routing of live exceptions only
    compiled = declared.at(instant(at))
    names = {n.strip() for n in namespaces.split(",") if n.strip()}
    if not names:
        names = {r.source.namespace for r in compiled.rules if r.source.namespace != "*"}
    names.add(compiled.egress_namespace)
    result = generate(compiled, sorted(names))
    for warning in result.warnings:
        click.echo(f"egress-guard: warning: {warning}", err=True)
    scoped = "".join(f"# label-scoped: {note}\n" for note in label_scoped_notes(compiled))
    click.echo(RENDER_HEADER + scoped + "---\n", nl=False)
    click.echo(yaml.safe_dump_all(list(result.manifests), sort_keys=True), nl=False)
