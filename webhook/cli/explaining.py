"""``egress-guard explain``: may this workload reach that host, and which rule decides it.

The answer is ``webhook.core.explain.explain``'s value; this module parses the flags and prints
it, as text or as JSON (``-o json``) for other tools.
"""

from __future__ import annotations

import json
import sys

import click

from webhook.cli.common import (
    AT_OPTION,
    EXIT_DENIED,
    EXIT_OK,
    POLICY_OPTION,
    fail,
    instant,
    load_policy,
    main,
)
from webhook.core.explain import Client, explain, parse_destination


@main.command("explain")
@POLICY_OPTION
@AT_OPTION
@click.option("--from", "source", required=True, metavar="NS[/LABEL=VALUE...][@SA]")
@click.option("--to", "destination", required=True, metavar="HOST[:PORT]")
@click.option(
    "--output",
    "-o",
    "output",
    default="text",
    show_default=True,
    type=click.Choice(["text", "json"]),
    help="json: one object with the source, destination, verdict, service, gateway and rules.",
)
def explain_command(
    policy_path: str | None, at: str | None, source: str, destination: str, output: str
) -> None:
    """Say whether a workload may reach a host, and which rule decides it.

    Exit 0 when allowed, 1 when denied, 2 on bad input.
    """
    policy = load_policy(policy_path).at(instant(at))
    try:
        client = Client.parse(source)
        host, port = parse_destination(destination)
    except ValueError as exc:
        fail(str(exc))
    answer = explain(policy, client, host, port)
    if output == "json":
        click.echo(json.dumps(answer.as_dict(), indent=2, sort_keys=True))
    else:
        click.echo(answer.headline)
        for line in answer.details:
            click.echo(f"  {line}")
        if answer.label_scoped:
            click.echo(f"  note: {answer.note}")
    sys.exit(EXIT_OK if answer.allowed else EXIT_DENIED)
