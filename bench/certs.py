# SPDX-License-Identifier: MPL-2.0
"""One throwaway Consul-shaped CA and the two leaves every pair in a run presents.

Every pair (meshkit, haproxy, stunnel, the experiment relays) loads the same files, so the
handshake cost compared is the cost of the same P-256 chain, not of different key types.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from meshkit.spiffe import ServiceID
from meshkit_tools import pki

TRUST_DOMAIN = "11111111-2222-3333-4444-555555555555.consul"


def service_id(name: str) -> ServiceID:
    return ServiceID(trust_domain=TRUST_DOMAIN, namespace="default", datacenter="dc1", service=name)


@dataclass(frozen=True)
class LeafFiles:
    """A leaf in the shapes the three proxies want: split PEMs, and cert+key in one file."""

    identity: ServiceID
    chain: Path
    key: Path
    combined: Path


@dataclass(frozen=True)
class BenchCerts:
    roots: Path
    client: LeafFiles  # the outbound side ("web"), presented to the inbound side
    server: LeafFiles  # the inbound side ("api"), which the outbound side verifies


def _write_leaf(directory: Path, root: pki.Issued, name: str) -> LeafFiles:
    identity = service_id(name)
    leaf = pki.issue_leaf(root, identity)
    chain = directory / f"{name}.crt"
    key = directory / f"{name}.key"
    combined = directory / f"{name}.pem"
    pki.write_public(chain, leaf.chain_pem)
    pki.write_private(key, leaf.key_pem)
    pki.write_private(combined, leaf.chain_pem + leaf.key_pem)
    return LeafFiles(identity=identity, chain=chain, key=key, combined=combined)


def make_certs(directory: Path) -> BenchCerts:
    directory.mkdir(parents=True, exist_ok=True)
    root = pki.make_root(TRUST_DOMAIN)
    roots = directory / "roots.pem"
    pki.write_public(roots, root.cert_pem)
    return BenchCerts(
        roots=roots,
        client=_write_leaf(directory, root, "web"),
        server=_write_leaf(directory, root, "api"),
    )
