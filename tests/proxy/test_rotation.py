# SPDX-License-Identifier: MPL-2.0
"""Roots and leaf rotated while traffic flows (the files change under running proxies)."""

from __future__ import annotations

import socket
from pathlib import Path

from cryptography import x509

from meshkit_tools import pki
from tests.support.echo import EchoApp, echo_once
from tests.support.pki_files import ThrowawayCA, write_bundle
from tests.support.ports import free_port
from tests.support.proxy_process import start_proxy
from tests.support.static_mesh import inbound_config, outbound_config
from tests.support.tls_client import tls_client_context
from tests.support.waits import wait_until


def served_serial(port: int, cert: Path, key: Path, *roots: Path) -> int:
    ctx = tls_client_context(cert, key, *roots)
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5)) as s:
        der = s.getpeercert(binary_form=True)
        assert der is not None
        s.sendall(b"serial?")
        assert s.recv(7) == b"serial?"
    return x509.load_der_x509_certificate(der).serial_number


def test_rotation_keeps_open_connections_and_uses_new_material(
    tmp_path: Path, ca: ThrowawayCA, app: EchoApp
) -> None:
    db, web = ca.leaf("db"), ca.leaf("web")
    db_roots = write_bundle(tmp_path / "db-roots.pem", ca.root_file())
    web_roots = write_bundle(tmp_path / "web-roots.pem", ca.root_file())
    public, upstream = free_port(), free_port()
    # One process each: the waits below read per-process facts (cert_loads_total reaching 2,
    # one handshake's serial), which a sum over workers that each poll the files would not give.
    one = ("-workers", "1")
    inbound = start_proxy(
        tmp_path, "db-proxy", inbound_config("db", db, [db_roots], app.port, public), *one
    )
    target = {"address": f"127.0.0.1:{public}", "spiffe_id": ca.identity("db").uri}
    outbound = start_proxy(
        tmp_path, "web-proxy", outbound_config("web", web, [web_roots], [target], upstream), *one
    )
    held = socket.create_connection(("127.0.0.1", upstream), timeout=5)
    try:
        # An open connection before the rotation.
        held.sendall(b"before")
        assert held.recv(6) == b"before"
        old_serial = db.issued.cert.serial_number
        assert served_serial(public, web.cert, web.key, ca.root_file()) == old_serial

        # Step 1: a new CA appears; both sides trust both roots.
        new_ca = ThrowawayCA.create(tmp_path / "pki2", name="ca2")
        new_ca.trust_domain = ca.trust_domain  # same cluster, new signing key (CA rotation)
        write_bundle(db_roots, ca.root_file(), new_ca.root_file("ca2"))
        write_bundle(web_roots, ca.root_file(), new_ca.root_file("ca2"))
        # As Consul does: every proxy trusts the new root before any leaf is signed by it.
        for proxy in (inbound, outbound):
            wait_until(lambda p=proxy: p.metric_sum("cert_loads_total") >= 2, timeout=10)

        # Step 2: db gets a leaf from the new CA, written over its files.
        new_db = pki.issue_leaf(new_ca.root, ca.identity("db"))
        pki.write_public(db.cert, new_db.chain_pem)
        pki.write_private(db.key, new_db.key_pem)

        # New handshakes use the new leaf (within the ~1 s poll interval).
        both = (ca.root_file(), new_ca.root_file("ca2"))
        wait_until(
            lambda: served_serial(public, web.cert, web.key, *both) == new_db.cert.serial_number,
            timeout=10,
        )
        # web still holds an old-root leaf: it keeps working because db trusts both roots.
        assert echo_once(upstream, b"old-root peer, new-root server") == (
            b"old-root peer, new-root server"
        )
        # The connection opened before all this still flows, both ways.
        held.sendall(b"after")
        assert held.recv(5) == b"after"
        assert inbound.metric_sum("handshake_failures_total") == 0
        assert outbound.metric_sum("handshake_failures_total") == 0
        assert inbound.metric_sum("cert_loads_total") >= 2
    finally:
        held.close()
        codes = outbound.stop(), inbound.stop()
    assert codes == (0, 0)


def test_unloadable_new_files_keep_the_old_material(
    tmp_path: Path, ca: ThrowawayCA, app: EchoApp
) -> None:
    db, web = ca.leaf("db"), ca.leaf("web")
    public = free_port()
    inbound = start_proxy(
        tmp_path, "db-proxy", inbound_config("db", db, [ca.root_file()], app.port, public)
    )
    try:
        other_key = pki.generate_key()
        pki.write_private(db.key, pki.key_pem(other_key))  # key no longer matches the cert
        wait_until(lambda: "were not loaded" in inbound.log(), timeout=10)
        assert served_serial(public, web.cert, web.key, ca.root_file()) == (
            db.issued.cert.serial_number
        )
        assert "PRIVATE KEY" not in inbound.log()
    finally:
        code = inbound.stop()
    assert code == 0
