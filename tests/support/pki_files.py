# SPDX-License-Identifier: MPL-2.0
"""Throwaway CAs and Consul-shaped leaves written to files, for proxy tests.

Built on `meshkit_tools.pki` so the leaves look like Consul's: empty subject, one critical URI SAN,
P-256, serverAuth+clientAuth. Keys are written 0600.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from pathlib import Path

from meshkit.spiffe import ServiceID, service_id
from meshkit_tools import pki


@dataclass(frozen=True)
class LeafFiles:
    cert: Path  # leaf followed by intermediates
    key: Path
    issued: pki.Issued
    identity: ServiceID


@dataclass
class ThrowawayCA:
    """A root (optionally with an intermediate that signs the leaves)."""

    directory: Path
    trust_domain: str
    root: pki.Issued
    signer: pki.Issued
    datacenter: str = "dc1"

    @classmethod
    def create(
        cls, directory: Path, *, name: str = "ca", intermediate: bool = False, dc: str = "dc1"
    ) -> ThrowawayCA:
        directory.mkdir(parents=True, exist_ok=True)
        trust_domain = f"{uuid.uuid4()}.consul"
        root = pki.make_root(trust_domain)
        signer = pki.make_intermediate(root, trust_domain) if intermediate else root
        ca = cls(directory, trust_domain, root, signer, dc)
        pki.write_public(ca.root_file(name), root.cert_pem)
        return ca

    def root_file(self, name: str = "ca") -> Path:
        return self.directory / f"{name}-root.pem"

    def identity(self, service: str) -> ServiceID:
        return service_id(self.trust_domain, self.datacenter, service)

    def leaf(
        self,
        service: str,
        *,
        name: str | None = None,
        valid_for: dt.timedelta = dt.timedelta(hours=72),
        not_before: dt.datetime | None = None,
        uri: str | None = None,
    ) -> LeafFiles:
        ident = self.identity(service)
        issued = pki.issue_leaf(
            self.signer, uri or ident, valid_for=valid_for, not_before=not_before
        )
        base = name or service
        cert = self.directory / f"{base}.pem"
        key = self.directory / f"{base}-key.pem"
        pki.write_public(cert, issued.chain_pem)
        pki.write_private(key, issued.key_pem)
        return LeafFiles(cert, key, issued, ident)

    def expired_leaf(self, service: str, *, name: str | None = None) -> LeafFiles:
        start = pki.utcnow() - dt.timedelta(days=3)
        return self.leaf(service, name=name, not_before=start, valid_for=dt.timedelta(days=1))


def write_bundle(path: Path, *roots: Path) -> Path:
    """Concatenate root files into one (both roots trusted during a rotation)."""
    pki.write_public(path, "".join(p.read_text() for p in roots))
    return path
