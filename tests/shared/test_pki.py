# SPDX-License-Identifier: MPL-2.0
import datetime as dt
import os
import stat
from pathlib import Path

from cryptography import x509
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from meshkit.spiffe import parse_service_uri, service_id
from meshkit_tools import pki

TD = "11111111-2222-3333-4444-555555555555.consul"


def _verify(leaf: pki.Issued, roots: list[x509.Certificate]) -> None:
    store = verification.Store(roots)
    verifier = verification.PolicyBuilder().store(store).build_client_verifier()
    verifier.verify(leaf.cert, list(leaf.chain))


def test_leaf_looks_like_a_modern_consul_leaf() -> None:
    root = pki.make_root(TD)
    leaf = pki.issue_leaf(root, service_id(TD, "dc1", "web"), valid_for=dt.timedelta(hours=1))
    cert = leaf.cert
    assert len(cert.subject) == 0
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == [f"spiffe://{TD}/ns/default/dc/dc1/svc/web"]
    assert parse_service_uri(uris[0]).service == "web"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    # backdated one minute, as Consul does
    assert cert.not_valid_before_utc <= dt.datetime.now(dt.UTC) - dt.timedelta(seconds=50)
    _verify(leaf, [root.cert])


def test_chain_through_an_intermediate_verifies_only_with_the_chain() -> None:
    root = pki.make_root(TD)
    inter = pki.make_intermediate(root, TD)
    leaf = pki.issue_leaf(inter, service_id(TD, "dc1", "db"))
    assert leaf.chain_pem.count("BEGIN CERTIFICATE") == 2
    _verify(leaf, [root.cert])
    other = pki.make_root(TD)
    try:
        _verify(leaf, [other.cert])
    except verification.VerificationError:
        pass
    else:
        raise AssertionError("a leaf verified under a root that did not sign it")


def test_key_pem_is_ec_private_key_and_written_0600(tmp_path: Path) -> None:
    leaf = pki.issue_leaf(pki.make_root(TD), service_id(TD, "dc1", "web"))
    assert leaf.key_pem.startswith("-----BEGIN EC PRIVATE KEY-----")
    path = tmp_path / "leaf.key"
    old = os.umask(0)
    try:
        pki.write_private(path, leaf.key_pem)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert pki.load_key(path.read_text()).public_key() == leaf.key.public_key()


def test_colon_hex_matches_consul_spelling() -> None:
    assert pki.colon_hex(8) == "08"
    assert pki.colon_hex(0x632A01) == "63:2a:01"
    assert pki.colon_hex(0) == "00"
