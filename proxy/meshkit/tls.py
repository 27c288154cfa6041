"""TLS contexts for both sides of the mesh, and reading the peer's identity.

Both sides follow Consul's built-in proxy (contract §3.3): TLS 1.2 minimum, a certificate
required from the peer and verified against every configured root (the peer's intermediates
are used as untrusted chain material), no hostname check, no ALPN offered or selected, and the
identity taken from the first URI SAN of the leaf.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from dataclasses import dataclass

from cryptography import x509

from meshkit.pki import colon_hex
from meshkit.spiffe import ServiceID, SpiffeError, parse_service_uri

# Consul's TLS 1.2 suites (ECDHE with AES-GCM or ChaCha20); TLS 1.3 suites are OpenSSL's defaults.
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)


class IdentityError(ValueError):
    """The peer's certificate does not carry a Consul service identity."""


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    service: ServiceID
    serial: str  # Consul's colon-hex spelling, as the authorize endpoint wants it


def _secure_dir() -> str | None:
    """Key material is written briefly for `load_cert_chain`; prefer RAM-backed storage."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def _load_chain(ctx: ssl.SSLContext, chain_pem: str, key_pem: str) -> None:
    # The stdlib only loads certificates and keys from files: write them 0600, load, unlink.
    fd, path = tempfile.mkstemp(prefix=".meshkit-", suffix=".pem", dir=_secure_dir())
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(chain_pem if chain_pem.endswith("\n") else chain_pem + "\n")
            fh.write(key_pem)
        ctx.load_cert_chain(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _base(ctx: ssl.SSLContext, chain_pem: str, key_pem: str, roots_pem: tuple[str, ...]) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata="\n".join(roots_pem))
    _load_chain(ctx, chain_pem, key_pem)


def server_context(chain_pem: str, key_pem: str, roots_pem: tuple[str, ...]) -> ssl.SSLContext:
    """Inbound: require a client certificate (OpenSSL checks the clientAuth EKU)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _base(ctx, chain_pem, key_pem, roots_pem)
    # Every mesh connection is a full handshake; tickets would only cost a signature and bytes.
    ctx.num_tickets = 0
    ctx.options |= ssl.OP_NO_TICKET
    return ctx


def client_context(chain_pem: str, key_pem: str, roots_pem: tuple[str, ...]) -> ssl.SSLContext:
    """Upstream: present the whole leaf chain, verify the server (serverAuth EKU)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _base(ctx, chain_pem, key_pem, roots_pem)
    return ctx


def peer_identity(der: bytes | None) -> PeerIdentity:
    """The first URI SAN of the peer leaf as a Consul service ID, and the leaf's serial."""
    if not der:
        raise IdentityError("peer presented no certificate")
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise IdentityError("peer certificate has no SAN extension") from exc
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if not uris:
        raise IdentityError("peer certificate has no URI SAN")
    try:
        service = parse_service_uri(uris[0])
    except SpiffeError as exc:
        raise IdentityError(str(exc)) from exc
    return PeerIdentity(service, colon_hex(cert.serial_number))
