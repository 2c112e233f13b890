"""TLS material for tests, demos and local use: a throwaway CA, a server certificate it signs
and, for mutual TLS, client certificates (good ones per role, and an expired one, a revoked one
with the CRL revoking it, and one from another CA, to see each refused).

A separate CA (rather than one self-signed leaf) is what clients expect to trust, and it keeps
the certificates acceptable to strict verifiers (OpenSSL's X509_STRICT, gRPC/BoringSSL). The CA's
private key is never written, so nothing else can be signed with it later. EC P-256 keys: fast
to generate and accepted by every TLS stack here. `obsrvr-ray certs` writes the same files.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SPIFFE_DOMAIN = "spiffe://obsrvr-ray.test"  # the client certificates' URI SANs: <domain>/<name>
_SKEW = dt.timedelta(minutes=5)  # certificates start a little in the past, for clocks slightly behind


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path  # what clients trust (requests verify=, websockets ssl context, Flight tls_root_certs)
    cert: Path  # the server's certificate (uvicorn ssl_certfile, Flight CertKeyPair.cert)
    key: Path  # the server's private key, mode 0600 (uvicorn ssl_keyfile, Flight CertKeyPair.key)


@dataclass(frozen=True)
class ClientFiles:
    cert: Path
    key: Path
    identity: str  # its URI SAN (spiffe://obsrvr-ray.test/<name>), what a settings table maps to roles


@dataclass(frozen=True)
class Pki:
    """`generate_pki`'s files: the server's, the CRL and one client certificate per name."""

    server: TlsFiles
    crl: Path  # the CA's CRL, revoking the `revoked` client
    clients: dict[str, ClientFiles]  # the names asked for, and `expired`, `revoked`, `other-ca`


@dataclass(frozen=True)
class _Ca:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, key_cert_sign=ca, crl_sign=ca, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=not ca,
                         encipher_only=False, decipher_only=False)


def _new_ca(name: str, now: dt.datetime, days: int) -> _Ca:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + dt.timedelta(days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return _Ca(key, cert)


def _leaf(ca: _Ca, subject: x509.Name, sans: list[x509.GeneralName], usage: x509.ObjectIdentifier,
          not_before: dt.datetime, not_after: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca.key, hashes.SHA256()))
    return cert, key


def _write(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, cert_path: Path, key_path: Path) -> None:
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.unlink(missing_ok=True)  # a new file, so the mode below applies
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def _server(ca: _Ca, out: Path, hosts: Sequence[str], now: dt.datetime, days: int) -> TlsFiles:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    cert, key = _leaf(ca, subject, [_san(h) for h in hosts], ExtendedKeyUsageOID.SERVER_AUTH, now,
                      now + dt.timedelta(days))
    files = TlsFiles(ca_cert=out / "ca.pem", cert=out / "server.pem", key=out / "server-key.pem")
    files.ca_cert.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    _write(cert, key, files.cert, files.key)
    return files


def generate_self_signed(directory: str | os.PathLike, hosts: Sequence[str] = ("localhost", "127.0.0.1", "::1"),
                         days: int = 30) -> TlsFiles:
    """Write ca.pem, server.pem and server-key.pem into `directory` for the given host names/addresses."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - _SKEW
    return _server(_new_ca("obsrvr-ray test CA", now, days), out, hosts, now, days)


def _client(ca: _Ca, out: Path, name: str, not_before: dt.datetime, not_after: dt.datetime
            ) -> tuple[ClientFiles, x509.Certificate]:
    identity = f"{SPIFFE_DOMAIN}/{name}"
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "obsrvr-ray test"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert, key = _leaf(ca, subject, [x509.UniformResourceIdentifier(identity)], ExtendedKeyUsageOID.CLIENT_AUTH,
                      not_before, not_after)
    files = ClientFiles(cert=out / f"client-{name}.pem", key=out / f"client-{name}-key.pem", identity=identity)
    _write(cert, key, files.cert, files.key)
    return files, cert


def generate_pki(directory: str | os.PathLike, hosts: Sequence[str] = ("localhost", "127.0.0.1", "::1"),
                 clients: Sequence[str] = ("admin", "reader", "processor"), days: int = 30) -> Pki:
    """A CA, a server certificate, a client certificate per name in `clients`, and the ones a
    mutual-TLS listener must refuse: `expired` (valid until yesterday), `revoked` (listed in crl.pem)
    and `other-ca` (signed by a CA of the same name that nobody trusts). Client certificates carry CN=<name> and the URI
    SAN spiffe://obsrvr-ray.test/<name>."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - _SKEW
    until = now + dt.timedelta(days)
    ca = _new_ca("obsrvr-ray test CA", now, days)
    server = _server(ca, out, hosts, now, days)
    made = {name: _client(ca, out, name, now, until) for name in (*clients, "revoked")}
    made["expired"] = _client(ca, out, "expired", now - dt.timedelta(days=2), now - dt.timedelta(days=1))
    made["other-ca"] = _client(_new_ca("obsrvr-ray test CA", now, days), out, "other-ca", now, until)
    revoked = x509.RevokedCertificateBuilder().serial_number(made["revoked"][1].serial_number).revocation_date(now)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject).last_update(now)
           .next_update(until).add_revoked_certificate(revoked.build()).sign(ca.key, hashes.SHA256()))
    crl_path = out / "crl.pem"
    crl_path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return Pki(server=server, crl=crl_path, clients={name: files for name, (files, _) in made.items()})
