# SPDX-License-Identifier: MPL-2.0
"""The proxy's current TLS material, swapped atomically.

Each new handshake asks the store for the current context; a connection keeps the context it
started with, so rotating a leaf or the roots never disturbs open connections. Static mode feeds
the store from files it polls (static/certs.py); Consul mode feeds it from its leaf and roots
watches (consul/certs.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509

from meshkit import tls

log = logging.getLogger("meshkit.certs")


@dataclass(frozen=True)
class TLSMaterial:
    chain_pem: str  # leaf first, then intermediates
    key_pem: str
    roots_pem: tuple[str, ...]  # every trusted root, active and not
    # The trust domains an inbound peer's identity may name (Consul mode: the CA roots'
    # TrustDomain; static mode: `tls.trust_domain`). Empty: the roots' own URI SANs.
    trust_domains: tuple[str, ...] = ()


class MaterialError(ValueError):
    """TLS material that cannot be used (unparsable, key does not match, no roots)."""


ENGINES = ("auto", "openssl", "stdlib")


def choose_engine(choice: str) -> str:
    """`openssl` (pyOpenSSL, the cryptography wheel's OpenSSL) when importable, else `stdlib`.

    `MESHKIT_TLS_ENGINE` overrides `auto`, so benchmarks and tests can flip it.
    """
    if choice == "auto":
        choice = os.environ.get("MESHKIT_TLS_ENGINE", "auto") or "auto"
    if choice not in ENGINES:
        raise ValueError(f"unknown TLS engine {choice!r}; use one of {', '.join(ENGINES)}")
    if choice in ("auto", "openssl"):
        try:
            import meshkit.openssl_engine  # noqa: F401
        except ImportError:
            if choice == "openssl":
                raise
            return "stdlib"
        return "openssl"
    return "stdlib"


def build_sides(engine: str, material: TLSMaterial) -> tuple[tls.Side, tls.Side]:
    args = (material.chain_pem, material.key_pem, material.roots_pem)
    if engine == "openssl":
        from meshkit.openssl_engine import openssl_sides

        return openssl_sides(*args)
    return tls.stdlib_sides(*args)


def root_trust_domains(roots_pem: tuple[str, ...]) -> frozenset[str]:
    """The trust domains the roots name: the host of each `spiffe://<domain>` URI SAN.

    A Consul CA root carries exactly that SAN (`pki.make_root`); a root without one (a
    hand-made CA) names no trust domain, and the operator has to say it (`tls.trust_domain`).
    """
    found: set[str] = set()
    for pem in roots_pem:
        try:
            cert = x509.load_pem_x509_certificate(pem.encode())
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (ValueError, x509.ExtensionNotFound):
            continue
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
            parts = urlsplit(uri)
            if parts.scheme.lower() == "spiffe" and parts.hostname:
                found.add(parts.hostname.lower())
    return frozenset(found)


def _describe(exc: BaseException) -> str:
    """OpenSSL errors as text, never echoing key material."""
    text = str(exc) or type(exc).__name__
    if "PRIVATE KEY" in text:
        return type(exc).__name__
    return text


class CertStore:
    """Holds the server and client contexts built from the latest accepted material."""

    def __init__(self, engine: str = "auto") -> None:
        self.engine = choose_engine(engine)
        self.server: tls.Side | None = None
        self.client: tls.Side | None = None
        self.material: TLSMaterial | None = None
        self.leaf_serial: str = ""
        self.leaf_uri: str = ""
        # Checked on every inbound identity (`inbound.InboundConn`): a leaf signed by a
        # trusted root but naming another trust domain is refused, in every authz mode.
        self.trust_domains: frozenset[str] = frozenset()
        self.listeners: list[Callable[[], None]] = []

    @property
    def loaded(self) -> bool:
        return self.server is not None

    def update(self, material: TLSMaterial) -> None:
        """Build both contexts first; only swap them in if both build (nothing half-applied)."""
        if not material.roots_pem:
            raise MaterialError("no CA roots")
        trust_domains = frozenset(d.lower() for d in material.trust_domains if d)
        if not trust_domains:
            trust_domains = root_trust_domains(material.roots_pem)
        if not trust_domains:
            raise MaterialError(
                "no trust domain: no CA root names one in a spiffe://<domain> URI SAN; "
                "set tls.trust_domain in the config file or pass -trust-domain DOMAIN"
            )
        try:
            server, client = build_sides(self.engine, material)
            leaf = x509.load_pem_x509_certificate(material.chain_pem.encode())
        except Exception as exc:  # ssl.SSLError, OpenSSL.SSL.Error, ValueError, ...
            raise MaterialError(f"unusable TLS material: {_describe(exc)}") from exc
        try:
            ident = tls.peer_identity(leaf)
            self.leaf_uri = ident.service.uri
            self.leaf_serial = ident.serial
        except tls.IdentityError:
            self.leaf_uri, self.leaf_serial = "", ""
        self.server, self.client, self.material = server, client, material
        self.trust_domains = trust_domains
        log.info(
            "TLS material loaded: leaf %s serial %s, %d root(s), trust domain %s",
            self.leaf_uri or "(no service URI)",
            self.leaf_serial,
            len(material.roots_pem),
            ", ".join(sorted(trust_domains)),
        )
        for callback in list(self.listeners):
            callback()

    def clear(self) -> None:
        """Forget the material (it must no longer be presented); `loaded` turns False and new
        inbound connections are refused until the next `update`."""
        self.server = self.client = self.material = None
        self.leaf_uri, self.leaf_serial = "", ""
        log.info("TLS material cleared")
