"""Development certificates and the server context that follows rotated certificate files."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webhook.tls import (
    KeyPair,
    ReloadingServerContext,
    dev_certificates,
    generate_ca,
    generate_files,
    issue_cert,
    issue_serving_cert,
    server_context,
    write_pair,
)

pytestmark = pytest.mark.unit


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str) -> x509.Certificate:
    """An in-memory TLS handshake; returns the certificate the server presented."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client_side = client.wrap_bio(c_in, c_out, server_hostname=hostname)
    server_side = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, side in (("client", client_side), ("server", server_side)):
            if done[name]:
                continue
            try:
                side.do_handshake()
                done[name] = True
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    der = client_side.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def client_for(ca_file: Path, *, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    if maximum is not None:
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = maximum
        # let the client really speak old TLS, so a refusal comes from the server
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    out = tmp_path_factory.mktemp("certs")
    f = generate_files(out, ["localhost", "127.0.0.1", "egress-guard.egress-guard.svc"])
    return f.ca_file, f.cert_file, f.key_file


def test_serving_certificate_has_dns_and_ip_sans(files: tuple[Path, Path, Path]) -> None:
    _, cert_file, _ = files
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost", "egress-guard.egress-guard.svc"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_private_keys_are_readable_by_the_owner_only(files: tuple[Path, Path, Path]) -> None:
    ca_file, cert_file, key_file = files
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((ca_file.parent / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_file.stat().st_mode) == 0o644


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1", "egress-guard.egress-guard.svc"])
def test_a_client_trusting_the_ca_verifies_every_san(
    files: tuple[Path, Path, Path], hostname: str
) -> None:
    ca_file, cert_file, key_file = files
    cert = handshake(server_context(cert_file, key_file), client_for(ca_file), hostname)
    assert cert.subject.rfc4514_string() == "CN=localhost"


def test_a_name_outside_the_sans_is_refused(files: tuple[Path, Path, Path]) -> None:
    ca_file, cert_file, key_file = files
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server_context(cert_file, key_file), client_for(ca_file), "evil.example.com")


def test_a_client_of_another_ca_is_refused(files: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, cert_file, key_file = files
    other = generate_files(tmp_path, ["localhost"])
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server_context(cert_file, key_file), client_for(other.ca_file), "localhost")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_1_1_is_refused(files: tuple[Path, Path, Path]) -> None:
    ca_file, cert_file, key_file = files
    server = server_context(cert_file, key_file)
    assert server.minimum_version == ssl.TLSVersion.TLSv1_2
    client = client_for(ca_file, maximum=ssl.TLSVersion.TLSv1_1)
    with pytest.raises(ssl.SSLError):
        handshake(server, client, "localhost")
    # control: the same client gets through once the server's floor is lowered
    lax = server_context(cert_file, key_file)
    lax.minimum_version = ssl.TLSVersion.TLSv1
    lax.set_ciphers("DEFAULT:@SECLEVEL=0")
    assert handshake(lax, client, "localhost").subject.rfc4514_string() == "CN=localhost"


def test_issue_serving_cert_needs_a_host() -> None:
    with pytest.raises(ValueError, match="at least one host"):
        issue_serving_cert(generate_ca(), [])


def _usages(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_a_client_certificate_names_the_user_and_groups_and_serves_nothing() -> None:
    ca = generate_ca()
    pair = issue_cert(ca, "admin", organizations=("system:masters", "ops"), client=True)
    cert = pair.certificate
    cert.verify_directly_issued_by(ca.certificate)
    subject = cert.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "admin"
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:masters",
        "ops",
    ]
    assert _usages(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_a_certificate_for_both_uses_carries_both_and_its_hosts() -> None:
    pair = issue_cert(
        generate_ca(), "kube-apiserver", hosts=["kubernetes", "10.0.0.1"], server=True, client=True
    )
    assert _usages(pair.certificate) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]
    sans = pair.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["kubernetes"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.1"]


def test_a_certificate_without_a_use_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a use"):
        issue_cert(generate_ca(), "nobody", hosts=["localhost"])


def test_a_pair_survives_a_pem_round_trip() -> None:
    pair = issue_serving_cert(generate_ca(), ["localhost"])
    again = KeyPair.from_pem(pair.cert_pem(), pair.key_pem())
    assert again.certificate == pair.certificate
    assert again.key_pem() == pair.key_pem()


def test_a_pair_with_a_non_ec_key_is_refused() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match="EC private key"):
        KeyPair.from_pem(generate_ca().cert_pem(), pem)


def test_dev_certificates_are_reused_while_valid(tmp_path: Path) -> None:
    first = dev_certificates(tmp_path)
    der = first.cert_file.read_bytes()
    again = dev_certificates(tmp_path)
    assert again == first
    assert again.cert_file.read_bytes() == der


def test_dev_certificates_are_regenerated_for_new_hosts(tmp_path: Path) -> None:
    first = dev_certificates(tmp_path, ["localhost"])
    old = first.cert_file.read_bytes()
    dev_certificates(tmp_path, ["localhost", "webhook.example.internal"])
    assert first.cert_file.read_bytes() != old


def _serial_served(ctx: ReloadingServerContext, ca_file: Path) -> int:
    return handshake(ctx.current(), client_for(ca_file), "localhost").serial_number


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rotated_files_are_served_from_the_next_handshake(tmp_path: Path) -> None:
    f = generate_files(tmp_path, ["localhost"])
    ca = generate_ca()
    # re-sign with a CA whose file the client trusts: write both CAs into one bundle
    bundle = tmp_path / "bundle.crt"
    bundle.write_bytes(f.ca_file.read_bytes() + ca.cert_pem())
    clock = FakeClock()
    events: list[tuple[bool, str]] = []
    ctx = ReloadingServerContext(
        f.cert_file,
        f.key_file,
        check_interval=1.0,
        clock=clock,
        on_reload=lambda ok, err: events.append((ok, err)),
    )
    before = _serial_served(ctx, bundle)
    rotated = issue_serving_cert(ca, ["localhost"])
    write_pair(rotated, f.cert_file, f.key_file)
    assert _serial_served(ctx, bundle) == before, "no re-check before the interval"
    clock.now = 2.0
    assert _serial_served(ctx, bundle) == rotated.certificate.serial_number
    assert events == [(True, "")]


def test_a_mismatched_pair_keeps_the_old_certificate(tmp_path: Path) -> None:
    f = generate_files(tmp_path, ["localhost"])
    clock = FakeClock()
    events: list[tuple[bool, str]] = []
    ctx = ReloadingServerContext(
        f.cert_file,
        f.key_file,
        clock=clock,
        on_reload=lambda ok, err: events.append((ok, err)),
    )
    before = _serial_served(ctx, f.ca_file)
    other = issue_serving_cert(generate_ca(), ["localhost"])
    # only the certificate changed: its key is still the old one
    f.cert_file.write_bytes(other.cert_pem())
    clock.now = 5.0
    assert not ctx.check()
    assert _serial_served(ctx, f.ca_file) == before
    assert events and events[0][0] is False


def test_a_briefly_missing_file_keeps_serving(tmp_path: Path) -> None:
    f = generate_files(tmp_path, ["localhost"])
    ctx = ReloadingServerContext(f.cert_file, f.key_file, check_interval=0)
    before = ctx.current()
    f.key_file.unlink()
    assert ctx.current() is before
