"""``egress-guard policy validate|schema``: the policy document, checked or described."""

from __future__ import annotations

import json
import sys

import click

from webhook.cli.common import EXIT_DENIED, main, problems, read
from webhook.core.errors import PolicyError
from webhook.core.policy_parsing import parse_policy
from webhook.core.policy_schema import POLICY_SCHEMA


@main.group()
def policy() -> None:
    """Work with egress policy documents."""


@policy.command("validate")
@click.argument("file")
def policy_validate(file: str) -> None:
    """Check a policy file; list every problem with its field path.  Exit 0 valid, 1 not, 2 bad."""
    text = read(file)
    try:
        compiled = parse_policy(text, name=file)
    except PolicyError as exc:
        click.echo(f"{file}: INVALID ({len(exc.problems)} problem(s))")
        click.echo(problems(exc))
        sys.exit(EXIT_DENIED)
    click.echo(
        f"{file}: OK, mode {compiled.mode.value}, {len(compiled.services)} external service(s), "
        f"{len(compiled.rules)} rule(s), revision {compiled.revision}"
    )


def schema_text() -> str:
    """The policy JSON Schema as written to ``policies/egress-policy.schema.json``."""
    return json.dumps(POLICY_SCHEMA, indent=2, ensure_ascii=False) + "\n"


@policy.command("schema")
def policy_schema() -> None:
    """Print the JSON Schema of the policy document."""
    click.echo(schema_text(), nl=False)
