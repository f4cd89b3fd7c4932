"""``egress-guard certs generate``: a CA and a serving certificate for the webhook."""

from __future__ import annotations

from pathlib import Path

import click

from webhook.cli.common import fail, main


@main.group()
def certs() -> None:
    """TLS certificates for the webhook."""


@certs.command("generate")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="DNS name or IP for the certificate (repeatable; default: loopback and the "
    "egress-guard Service names).",
)
@click.option("--days", default=365, show_default=True, type=click.IntRange(1, 3650))
def certs_generate(out: Path, hosts: tuple[str, ...], days: int) -> None:
    """Write a CA (ca.crt, ca.key) and a serving certificate (tls.crt, tls.key) to --out."""
    from webhook.tls import DEFAULT_HOSTS, generate_files

    try:
        files = generate_files(out, hosts or DEFAULT_HOSTS, days=days)
    except (OSError, ValueError) as exc:
        fail(f"cannot write certificates to {out}: {exc}")
    click.echo(f"CA certificate:      {files.ca_file}")
    click.echo(f"serving certificate: {files.cert_file}")
    click.echo(f"serving key:         {files.key_file}")
