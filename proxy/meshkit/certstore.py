# SPDX-License-Identifier: MPL-2.0
"""The proxy's current TLS material, swapped atomically.

Each new handshake asks the store for the current context; a connection keeps the context it
started with, so rotating a leaf or the roots never disturbs open connections. Static mode feeds
the store from files it polls; Consul mode feeds it from its leaf and roots watches.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509

from meshkit import bounded, tls

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


def split_pems(text: str) -> tuple[str, ...]:
    """Each certificate of a PEM bundle on its own."""
    out: list[str] = []
    marker = "-----END CERTIFICATE-----"
    for part in text.split(marker):
        begin = part.find("-----BEGIN CERTIFICATE-----")
        if begin >= 0:
            out.append(part[begin:] + marker + "\n")
    return tuple(out)


@dataclass(frozen=True)
class MaterialFiles:
    cert_file: Path  # leaf + intermediates
    key_file: Path
    roots_files: tuple[Path, ...]
    trust_domains: tuple[str, ...] = ()  # static mode's `tls.trust_domain` / -trust-domain

    def paths(self) -> tuple[Path, ...]:
        return (self.cert_file, self.key_file, *self.roots_files)

    def read(self) -> TLSMaterial:
        try:
            return self._read()
        except bounded.FileError as exc:  # unreadable, too large, not UTF-8
            raise MaterialError(str(exc)) from None

    def _read(self) -> TLSMaterial:
        roots: list[str] = []
        for path in self.roots_files:
            found = split_pems(bounded.read_text(path))
            if not found:
                raise MaterialError(f"{path}: no PEM certificate found")
            roots.extend(found)
        chain = bounded.read_text(self.cert_file)
        if not split_pems(chain):
            raise MaterialError(f"{self.cert_file}: no PEM certificate found")
        key = bounded.read_text(self.key_file)
        return TLSMaterial(chain, key, tuple(roots), trust_domains=self.trust_domains)


def _stamp(paths: tuple[Path, ...]) -> tuple[tuple[int, int, int, int], ...]:
    out = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((st.st_ino, st.st_mtime_ns, st.st_size, st.st_ctime_ns))
        except FileNotFoundError:
            out.append((0, 0, 0, 0))
    return tuple(out)


class FileWatcher:
    """Poll the material files (inode, mtime, size, then content hash) and feed the store.

    Polling keeps this dependency-free and works with atomic renames, editors, and
    configuration management alike; a one-second interval bounds how stale a rotation can be.
    A change that does not load (half-written file, key not matching) is logged and retried on
    the next tick; the previous material stays in use.
    """

    def __init__(self, files: MaterialFiles, store: CertStore, interval: float = 1.0) -> None:
        self.files = files
        self.store = store
        self.interval = interval
        self._stamp: tuple[tuple[int, int, int, int], ...] = ()
        self._digest = b""
        self._task: asyncio.Task[None] | None = None

    def load_now(self) -> None:
        """First load: raises so start-up can refuse bad files with a clear message."""
        stamp = _stamp(self.files.paths())
        material = self.files.read()
        digest = _digest(material)
        self.store.update(material)
        self._stamp, self._digest = stamp, digest

    def poll(self) -> bool:
        stamp = _stamp(self.files.paths())
        if stamp == self._stamp:
            return False
        try:
            material = self.files.read()
        except (OSError, MaterialError) as exc:
            log.warning("TLS files changed but could not be read: %s", exc)
            return False
        digest = _digest(material)
        if digest == self._digest:
            self._stamp = stamp
            return False
        try:
            self.store.update(material)
        except MaterialError as exc:
            log.warning("TLS files changed but were not loaded, keeping the old ones: %s", exc)
            return False
        self._stamp, self._digest = stamp, digest
        return True

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.poll()


def _digest(material: TLSMaterial) -> bytes:
    h = hashlib.sha256()
    for part in (material.chain_pem, material.key_pem, *material.roots_pem):
        h.update(part.encode())
        h.update(b"\0")
    return h.digest()
