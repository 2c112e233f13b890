"""Mutual TLS: the server side of a listener's handshake, and who a verified client certificate is.

The handshake does the verifying (OpenSSL, through `ssl`): the chain to `client_ca`, the validity
dates and, with a CRL, revocation of the client's certificate. A certificate that fails any of
them never reaches the app. What reaches it is the DER of a certificate that passed; `CertificateMap`
turns that into a Principal through the `tls.identities` table: the first of the certificate's
names found there (URI SANs such as SPIFFE IDs, then `dns:` SANs, then the RFC 4514 subject)
gives the roles. A verified certificate matching no entry is a principal with no roles: it is
refused (403) wherever a permission is needed.

The CRL is read when the listener starts: a new CRL takes effect on the next (rolling) restart.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence

from cryptography import x509

from obsrvr_ray.errors import ConfigError
from obsrvr_ray.security.policy import Principal
from obsrvr_ray.security.security_settings import ClientCertPolicy, SecuritySettings


def server_context(settings: SecuritySettings, listener: str, alpn: Sequence[str] = ()) -> ssl.SSLContext:
    """The TLS server context of `listener` ("https" or "flight"): the server's certificate and, when
    the listener takes client certificates, their verification (CA, required/optional, CRL)."""
    if not settings.tls_enabled:
        raise ConfigError(f"the {listener} listener has no certificate: set tls_cert and tls_key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    policy = settings.tls.policy(listener)
    if policy is not None:
        _verify_clients(context, policy)
    return context


def _verify_clients(context: ssl.SSLContext, policy: ClientCertPolicy) -> None:
    context.verify_mode = ssl.CERT_REQUIRED if policy.required else ssl.CERT_OPTIONAL
    try:
        context.load_verify_locations(cafile=policy.client_ca)
        if policy.crl:
            context.load_verify_locations(cafile=policy.crl)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"tls: cannot load {policy.crl or policy.client_ca}: {exc}") from exc
    if policy.crl:  # the client's certificate only: the CA's own status is the operator's to manage
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def certificate_names(der: bytes) -> list[str]:
    """The names a certificate may be mapped by, most specific first: URI SANs, `dns:` SANs, subject."""
    cert = x509.load_der_x509_certificate(der)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    names = list(sans.get_values_for_type(x509.UniformResourceIdentifier))
    names += [f"dns:{name}" for name in sans.get_values_for_type(x509.DNSName)]
    subject = cert.subject.rfc4514_string()
    return names + ([subject] if subject else [])


class CertificateMap:
    """Verified client certificates -> principals, by the `tls.identities` table."""

    def __init__(self, identities: Mapping[str, Sequence[str]]) -> None:
        self.identities = {name: frozenset(roles) for name, roles in identities.items()}

    def principal(self, der: bytes) -> Principal:
        names = certificate_names(der)
        mapped = next((name for name in names if name in self.identities), None)
        name = mapped or (names[0] if names else "unnamed certificate")
        return Principal(id=f"cert:{name}", roles=self.identities.get(mapped, frozenset()), kind="certificate",
                         name=names[-1] if names else name)
