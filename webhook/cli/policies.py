"""``egress-guard policy validate|diff|schema``: a policy document checked, compared, described."""

from __future__ import annotations

import json
import sys

import click

from webhook.cli.common import (
    AT_OPTION,
    EXIT_DENIED,
    OUTPUT_OPTION,
    fail,
    instant,
    main,
    problems,
    read_policy,
)
from webhook.core.errors import PolicyError
from webhook.core.policy_diff import policy_diff_text
from webhook.core.policy_parsing import parse_policy
from webhook.core.policy_schema import POLICY_SCHEMA


@main.group()
def policy() -> None:
    """Work with egress policy documents."""


@policy.command("validate")
@click.argument("file")
def policy_validate(file: str) -> None:
    """Check a policy file; list every problem with its field path.  Exit 0 valid, 1 not, 2 bad."""
    text = read_policy(file)
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


@policy.command("diff")
@click.argument("old")
@click.argument("new")
@AT_OPTION
@click.option(
    "--namespaces",
    default="",
    help="Comma-separated namespaces whose generated objects to compare "
    "(default: those the rules name).",
)
@OUTPUT_OPTION
def policy_diff(old: str, new: str, at: str | None, namespaces: str, output: str) -> None:
    """Grants added and removed (source -> service/host:port) and generated objects changed.

    Both policies are judged as in force at --at (default now), exceptions included; NEW is
    validated as the webhook validates it at apply.  Exit 0, or 2 when either is unusable.
    """
    names = [n.strip() for n in namespaces.split(",") if n.strip()] or None
    now = instant(at)
    old_text, new_text = read_policy(old), read_policy(new)
    try:
        text = policy_diff_text(
            old_text,
            new_text,
            now=now,
            output="json" if output == "json" else "table",
            namespaces=names,
        )
    except PolicyError as exc:
        fail(f"{_unusable(old, old_text, new)} is not usable:\n{problems(exc)}")
    click.echo(text, nl=False)


def _unusable(old: str, old_text: str, new: str) -> str:
    """Which of the two files the diff refused (only asked once it has refused one)."""
    try:
        parse_policy(old_text, name=old)
    except PolicyError:
        return old
    return new


def schema_text() -> str:
    """The policy JSON Schema as written to ``policies/egress-policy.schema.json``."""
    return json.dumps(POLICY_SCHEMA, indent=2, ensure_ascii=False) + "\n"


@policy.command("schema")
def policy_schema() -> None:
    """Print the JSON Schema of the policy document."""
    click.echo(schema_text(), nl=False)
