"""Certificates for the control plane and the webhook, issued by ``webhook.tls``.

The harness uses the product's own certificate code, so the e2e run also proves that what
``egress-guard`` generates is accepted by a real kube-apiserver and by kubectl.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.e2e.harness.common import HarnessError
from webhook import tls


@dataclass(frozen=True)
class CertKey:
    """A PEM certificate and its PEM private key."""

    cert_pem: bytes
    key_pem: bytes

    def write(self, cert_path: Path, key_path: Path) -> None:
        cert_path.write_bytes(self.cert_pem)
        key_path.touch(mode=0o600)
        key_path.write_bytes(self.key_pem)


def _pem(pair: tls.KeyPair) -> CertKey:
    return CertKey(pair.cert_pem(), pair.key_pem())


def new_ca(common_name: str) -> CertKey:
    """A self-signed CA (ECDSA P-256: fast to generate, accepted everywhere here)."""
    return _pem(tls.generate_ca(common_name, days=365))


def issue_cert(
    ca: CertKey,
    common_name: str,
    *,
    organizations: Sequence[str] = (),
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    server: bool = False,
    client: bool = False,
) -> CertKey:
    """A leaf certificate signed by ``ca`` for TLS serving and/or client authentication."""
    try:
        signer = tls.KeyPair.from_pem(ca.cert_pem, ca.key_pem)
    except ValueError as exc:
        raise HarnessError(f"the harness CA is unusable: {exc}") from exc
    pair = tls.issue_cert(
        signer,
        common_name,
        organizations=organizations,
        hosts=[*dns_names, *ip_addresses],
        server=server,
        client=client,
    )
    return _pem(pair)


def new_signing_key() -> CertKey:
    """Service-account token signing key pair; ``cert_pem`` holds the public key."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return CertKey(public, private)
