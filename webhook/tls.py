"""Certificates for the webhook: a CA and serving certificates, and a server context that reloads.

The API server only talks to a webhook over TLS, checking the serving certificate against the
``caBundle`` of the webhook configuration.  Production certificates come from cert-manager or the
Helm chart and are rotated by rewriting the mounted files; ``ReloadingServerContext`` notices the
change and serves the new certificate on the next handshake, without a restart.  For development,
``egress-guard serve`` and ``egress-guard certs generate`` make a small CA and a serving
certificate here.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS: tuple[str, ...] = (
    "localhost",
    "127.0.0.1",
    "::1",
    "egress-guard",
    "egress-guard.egress-guard",
    "egress-guard.egress-guard.svc",
    "egress-guard.egress-guard.svc.cluster.local",
)
CA_FILE = "ca.crt"
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"


@dataclass(frozen=True, slots=True)
class CertificateFiles:
    """Where a CA certificate and a serving certificate with its key were written."""

    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A certificate and its private key, in memory."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> KeyPair:
        """A pair read back from PEM; ValueError unless the key is an unencrypted EC key."""
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("expected an EC private key")
        return cls(x509.load_pem_x509_certificate(cert_pem), key)

    def cert_pem(self) -> bytes:
        """The certificate as PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def generate_ca(common_name: str = "egress-guard dev CA", *, days: int = 3650) -> KeyPair:
    """A self-signed CA able to sign serving certificates (and nothing below them)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # backdated a little so a client whose clock lags accepts it at once
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert, key)


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def issue_serving_cert(ca: KeyPair, hosts: Sequence[str], *, days: int = 365) -> KeyPair:
    """A server certificate signed by ``ca`` for DNS names and IP addresses ``hosts``."""
    if not hosts:
        raise ValueError("a serving certificate needs at least one host")
    return issue_cert(ca, hosts[0], hosts=hosts, server=True, days=days)


def issue_cert(
    ca: KeyPair,
    common_name: str,
    *,
    organizations: Sequence[str] = (),
    hosts: Sequence[str] = (),
    server: bool = False,
    client: bool = False,
    days: int = 365,
) -> KeyPair:
    """A leaf certificate signed by ``ca`` for serving ``hosts`` and/or client authentication.

    A client certificate's ``common_name`` and ``organizations`` are the Kubernetes user name and
    groups the API server derives from it.
    """
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if not usages:
        raise ValueError("a certificate needs a use: server, client or both")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    subject.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False
        )
    cert = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return KeyPair(cert, key)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically (temp file + rename) so a watcher never reads half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_pair(pair: KeyPair, cert_file: Path, key_file: Path) -> None:
    """Write a certificate (0644) and its key (0600); the key first, so a reader sees a pair."""
    _write(key_file, pair.key_pem(), 0o600)
    _write(cert_file, pair.cert_pem(), 0o644)


def generate_files(
    out_dir: Path, hosts: Iterable[str] = DEFAULT_HOSTS, *, days: int = 365
) -> CertificateFiles:
    """Generate a CA and a serving certificate for ``hosts`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ca = generate_ca()
    serving = issue_serving_cert(ca, list(dict.fromkeys(hosts)), days=days)
    files = CertificateFiles(out_dir / CA_FILE, out_dir / CERT_FILE, out_dir / KEY_FILE)
    _write(files.ca_file, ca.cert_pem(), 0o644)
    # the CA key is written too so the same CA can sign a rotated certificate later
    _write(out_dir / "ca.key", ca.key_pem(), 0o600)
    write_pair(serving, files.cert_file, files.key_file)
    return files


def dev_certificates(cache_dir: Path, hosts: Iterable[str] = DEFAULT_HOSTS) -> CertificateFiles:
    """Reuse the development certificates in ``cache_dir`` while valid, else make new ones."""
    files = CertificateFiles(cache_dir / CA_FILE, cache_dir / CERT_FILE, cache_dir / KEY_FILE)
    ordered = list(dict.fromkeys(hosts))
    wanted = set(ordered)
    if all(p.exists() for p in (files.ca_file, files.cert_file, files.key_file)):
        try:
            cert = x509.load_pem_x509_certificate(files.cert_file.read_bytes())
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = {str(n.value) for n in sans}
            fresh = cert.not_valid_after_utc - _now() > datetime.timedelta(days=7)
            if wanted <= names and fresh:
                return files
        except (ValueError, x509.ExtensionNotFound):
            pass  # unreadable or foreign: regenerate below
    return generate_files(cache_dir, ordered)


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A TLS server context: TLS 1.2 minimum, the certificate chain loaded."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # the webhook talks HTTP/1.1 only; offering it keeps ALPN-speaking clients on it
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    return context


def _stamp(*paths: Path) -> tuple[tuple[int, int, int], ...]:
    stamps = []
    for path in paths:
        st = path.stat()  # follows symlinks: Kubernetes swaps the ..data link on rotation
        stamps.append((st.st_mtime_ns, st.st_ino, st.st_size))
    return tuple(stamps)


class ReloadingServerContext:
    """An SSL context that follows its certificate files.

    gunicorn asks for a context on every accepted connection; ``current()`` returns the same
    object until the files change, then builds a new one and swaps it in, so in-flight handshakes
    keep the old context and new ones get the new certificate.  A fresh context instead of
    ``load_cert_chain`` on the shared one because OpenSSL does not promise that changing a context
    is safe while other threads create connections from it.  The file check is rate-limited, so the
    per-connection cost is a clock read.  A half-written or mismatched pair keeps the old context
    and is retried on the next check.
    """

    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        *,
        check_interval: float = 1.0,
        on_reload: Callable[[bool, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.check_interval = check_interval
        self._on_reload = on_reload
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp = _stamp(cert_file, key_file)
        self._context = server_context(cert_file, key_file)
        self._next_check = clock() + check_interval

    def current(self) -> ssl.SSLContext:
        """The context for a new connection, reloaded first if the files changed."""
        if self._clock() >= self._next_check:
            self.check()
        return self._context

    def check(self) -> bool:
        """Reload the certificate if the files changed; True when a new one was loaded."""
        with self._lock:
            self._next_check = self._clock() + self.check_interval
            try:
                stamp = _stamp(self.cert_file, self.key_file)
            except OSError:
                return False  # mid-rotation: a file is briefly missing
            if stamp == self._stamp:
                return False
            try:
                context = server_context(self.cert_file, self.key_file)
            except (OSError, ssl.SSLError) as exc:
                # keep serving the old certificate; retry when the files change again
                self._stamp = stamp
                if self._on_reload is not None:
                    self._on_reload(False, str(exc))
                return False
            self._stamp = stamp
            self._context = context
        if self._on_reload is not None:
            self._on_reload(True, "")
        return True
