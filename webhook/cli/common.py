"""The ``egress-guard`` click group and what every command shares: reading input, failing.

Exit codes of the offline commands: 0 allowed / valid, 1 denied / invalid, 2 bad input
(unreadable file, bad YAML, unusable policy).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import click

from webhook.core.errors import PolicyError
from webhook.core.policy import Policy
from webhook.core.policy_documents import GZIP_MAGIC, gunzip
from webhook.core.policy_parsing import parse_policy
from webhook.policy_runtime import EMBEDDED_POLICY, embedded_policy_text

EXIT_OK = 0
EXIT_DENIED = 1
EXIT_BAD_INPUT = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="egress-guard")
def main() -> None:
    """egress-guard: an egress allow list enforced as Istio configuration."""


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``message`` on stderr and exit (2, bad input, unless told otherwise)."""
    click.echo(f"egress-guard: {message}", err=True)
    sys.exit(code)


def read(path: str) -> str:
    """A file's text, ``-`` for stdin; exit 2 when unreadable."""
    try:
        if path == "-":
            return sys.stdin.read()
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {exc}")


def read_policy(path: str) -> str:
    """A policy file's text, ``-`` for stdin; a gzip file (``policy.json.gz``) decompressed.

    Decompression is capped as the webhook caps it, so a file the webhook would refuse as a
    compression bomb is refused here too (exit 2).
    """
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc}")
    try:
        if raw.startswith(GZIP_MAGIC):
            raw = gunzip(raw, where=path)
        return raw.decode("utf-8")
    except PolicyError as exc:
        fail(f"cannot read {path}:\n{problems(exc)}")
    except UnicodeDecodeError as exc:
        fail(f"cannot read {path}: {exc}")


def problems(exc: PolicyError) -> str:
    """A policy's problems, one indented line each with its field path."""
    return "\n".join(f"  {p.path or '<root>'}: {p.message}" for p in exc.problems)


def load_policy(path: str | None) -> Policy:
    """The policy in ``path`` (a ConfigMap or bare document), or the embedded default."""
    if path is None:
        text, origin = embedded_policy_text(), f"embedded:{EMBEDDED_POLICY}"
    else:
        text, origin = read_policy(path), path
    try:
        return parse_policy(text, name=origin)
    except PolicyError as exc:
        fail(f"the policy {origin} is not usable:\n{problems(exc)}")


POLICY_OPTION = click.option(
    "--policy",
    "policy_path",
    metavar="FILE",
    help="Policy file: a ConfigMap manifest or the bare policy document, gzipped or not "
    f"(default: the embedded {EMBEDDED_POLICY}).",
)


def instant(at: str | None) -> datetime:
    """The instant exceptions are judged at: ``--at`` (RFC 3339 with an offset) or now."""
    if at is None:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        fail(f"--at expects an RFC 3339 time such as 2026-12-01T12:00:00Z, got {at!r}")
    if when.tzinfo is None:
        fail(f"--at needs a UTC offset or Z: {at!r}")
    return when


# a table for people, JSON for CI jobs (``policy diff``, ``audit``)
OUTPUT_OPTION = click.option(
    "--output",
    "-o",
    "output",
    default="table",
    show_default=True,
    type=click.Choice(["table", "json"]),
)

AT_OPTION = click.option(
    "--at",
    "at",
    metavar="TIME",
    help="Judge as at this RFC 3339 instant (default: now): which exceptions are live.",
)
