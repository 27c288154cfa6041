# SPDX-License-Identifier: MPL-2.0
"""Certificates shaped like Consul's built-in CA makes them.

Used by the development control plane (its real CA) and by the tests (throwaway CAs), so the
proxy is always exercised with leaves that look like production ones: P-256 keys, an empty
subject, exactly one critical URI SAN, serverAuth+clientAuth, not a CA.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Re-exported: the CA and the tests spell them pki.colon_hex / pki.load_key.
from meshkit.certfmt import colon_hex as colon_hex
from meshkit.certfmt import load_key as load_key
from meshkit.spiffe import ServiceID, signing_uri

PrivateKey = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Issued:
    """A certificate with its key, and the chain above it (intermediates, not the root)."""

    cert: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def cert_pem(self) -> str:
        return cert_pem(self.cert)

    @property
    def chain_pem(self) -> str:
        """Leaf followed by its intermediates: what Consul's CertPEM holds."""
        return "".join(cert_pem(c) for c in (self.cert, *self.chain))

    @property
    def key_pem(self) -> str:
        return key_pem(self.key)


_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def generate_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def new_serial() -> int:
    return secrets.randbits(63) | 1


def key_id(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """SHA-256 over the public key bytes, as Consul's CA computes SubjectKeyId."""
    raw = public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(raw)
    return digest.finalize()


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key: PrivateKey) -> str:
    """`EC PRIVATE KEY` PEM, the form Consul's leaf endpoint returns."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def make_root(
    trust_domain: str,
    *,
    name: str | None = None,
    valid_for: dt.timedelta = dt.timedelta(days=3650),
    not_before: dt.datetime | None = None,
    key: PrivateKey | None = None,
) -> Issued:
    """A self-signed CA root carrying the trust domain as its URI SAN, like Consul's."""
    key = key or generate_key()
    start = (not_before or utcnow()) - dt.timedelta(minutes=1)
    subject = x509.Name(
        [
            x509.NameAttribute(
                NameOID.COMMON_NAME,
                name or f"pri-{secrets.token_hex(4)}.consul.ca.{trust_domain[:8]}.consul",
            )
        ]
    )
    kid = key_id(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(new_serial())
        .not_valid_before(start)
        .not_valid_after(start + valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier(kid), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(kid, None, None), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(signing_uri(trust_domain))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return Issued(cert=cert, key=key)


def make_intermediate(
    parent: Issued, trust_domain: str, *, valid_for: dt.timedelta = dt.timedelta(days=365)
) -> Issued:
    """An intermediate CA under `parent`, for chains longer than leaf+root."""
    key = generate_key()
    start = utcnow() - dt.timedelta(minutes=1)
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"int-{secrets.token_hex(4)}.consul.ca")]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(parent.cert.subject)
        .public_key(key.public_key())
        .serial_number(new_serial())
        .not_valid_before(start)
        .not_valid_after(start + valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier(key_id(key.public_key())), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier(key_id(parent.key.public_key()), None, None), critical=False
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(signing_uri(trust_domain))]
            ),
            critical=False,
        )
        .sign(parent.key, hashes.SHA256())
    )
    return Issued(cert=cert, key=key, chain=parent.chain if parent.chain else ())


def sign_leaf(
    issuer: Issued,
    identity: ServiceID | str,
    public_key: ec.EllipticCurvePublicKey,
    *,
    valid_for: dt.timedelta = dt.timedelta(hours=72),
    not_before: dt.datetime | None = None,
    serial: int | None = None,
    extended_key_usage: tuple[x509.ObjectIdentifier, ...] = (
        ExtendedKeyUsageOID.CLIENT_AUTH,
        ExtendedKeyUsageOID.SERVER_AUTH,
    ),
) -> x509.Certificate:
    """A Connect leaf: empty subject, one critical URI SAN, backdated a minute as Consul does."""
    uri = identity.uri if isinstance(identity, ServiceID) else identity
    start = (not_before or utcnow()) - dt.timedelta(minutes=1)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.cert.subject)
        .public_key(public_key)
        .serial_number(serial if serial is not None else new_serial())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(minutes=1) + valid_for)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(list(extended_key_usage)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier(key_id(public_key)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier(key_id(issuer.key.public_key()), None, None), critical=False
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=True
        )
        .sign(issuer.key, hashes.SHA256())
    )


def issue_leaf(
    issuer: Issued,
    identity: ServiceID | str,
    *,
    valid_for: dt.timedelta = dt.timedelta(hours=72),
    not_before: dt.datetime | None = None,
    serial: int | None = None,
) -> Issued:
    """A fresh key and its leaf; the chain carries `issuer` when it is an intermediate."""
    key = generate_key()
    cert = sign_leaf(
        issuer,
        identity,
        key.public_key(),
        valid_for=valid_for,
        not_before=not_before,
        serial=serial,
    )
    is_root = issuer.cert.issuer == issuer.cert.subject
    chain = () if is_root else (issuer.cert, *issuer.chain)
    return Issued(cert=cert, key=key, chain=chain)


def write_private(path: Path, text: str) -> None:
    """Write a secret atomically with mode 0600 from the first byte on."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def write_public(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
