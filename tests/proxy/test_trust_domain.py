# SPDX-License-Identifier: MPL-2.0
"""Static mode: a peer whose leaf names another trust domain is refused (issue 13 item 2).

The foreign leaf is signed by the very root the proxy trusts, so chain validation passes; only
the trust domain in its SPIFFE URI tells it apart. It must get zero bytes to the app.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from meshkit_tools import pki
from tests.support.echo import EchoApp
from tests.support.pki_files import LeafFiles, ThrowawayCA
from tests.support.ports import free_port
from tests.support.proxy_process import run_proxy_cli, start_proxy
from tests.support.static_mesh import inbound_config
from tests.support.tls_client import closed_without_data, tls_client_context
from tests.support.waits import wait_until

FOREIGN = "spiffe://other-cluster.consul/ns/default/dc/dc1/svc/web"


def _send(port: int, leaf: LeafFiles, root: Path, payload: bytes = b"ping") -> bytes:
    """Handshake as `leaf`, send, read the echo back (b"" when refused)."""
    ctx = tls_client_context(leaf.cert, leaf.key, root)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                tls.sendall(payload)
                got = b""
                while len(got) < len(payload) and (chunk := tls.recv(65536)):
                    got += chunk
                return got
        except (ssl.SSLError, ConnectionError):
            return b""


def _inbound(tmp_path: Path, ca: ThrowawayCA, app: EchoApp, **tls: Any) -> tuple[Any, int]:
    port = free_port()
    config = inbound_config("db", ca.leaf("db"), [ca.root_file()], app.port, port)
    config["tls"].update(tls)
    return start_proxy(tmp_path, "db-proxy", config), port


def test_foreign_trust_domain_signed_by_our_root_gets_zero_bytes_to_the_app(
    tmp_path: Path, ca: ThrowawayCA, app: EchoApp
) -> None:
    proxy, port = _inbound(tmp_path, ca, app)
    try:
        foreign = ca.leaf("web", name="web-foreign", uri=FOREIGN)
        assert _send(port, foreign, ca.root_file(), b"secret") == b""
        wait_until(
            lambda: proxy.metric_sum("handshake_failures_total", reason="foreign_trust_domain") == 1
        )
        assert app.accepts == 0
        assert "trust domain other-cluster.consul is not ours" in proxy.log()
        # The same proxy serves a peer of its own trust domain (the test can tell them apart).
        assert _send(port, ca.leaf("web"), ca.root_file(), b"hello") == b"hello"
        assert app.accepts == 1
    finally:
        assert proxy.stop() == 0


def test_trust_domain_setting_replaces_the_roots_default(
    tmp_path: Path, ca: ThrowawayCA, app: EchoApp
) -> None:
    proxy, port = _inbound(tmp_path, ca, app, trust_domain="Other-Cluster.consul")
    try:
        assert _send(port, ca.leaf("web"), ca.root_file()) == b""  # the roots' domain: refused
        assert app.accepts == 0
        foreign = ca.leaf("web", name="web-foreign", uri=FOREIGN)
        assert _send(port, foreign, ca.root_file(), b"hi") == b"hi"
        assert app.accepts == 1
    finally:
        assert proxy.stop() == 0


def test_trust_domain_flag_wins_over_the_file(
    tmp_path: Path, ca: ThrowawayCA, app: EchoApp
) -> None:
    port = free_port()
    config = inbound_config("db", ca.leaf("db"), [ca.root_file()], app.port, port)
    proxy = start_proxy(tmp_path, "db-proxy", config, "-trust-domain", "other-cluster.consul")
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        ctx = tls_client_context(ca.leaf("web").cert, ca.leaf("web").key, ca.root_file())
        with ctx.wrap_socket(raw) as tls:
            tls.sendall(b"x")
            assert closed_without_data(tls)
        assert app.accepts == 0
    finally:
        assert proxy.stop() == 0


def _root_without_uri_san(path: Path) -> pki.Issued:
    key = pki.generate_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hand-made root")])
    now = pki.utcnow()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(pki.new_serial())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier(pki.key_id(key.public_key())), critical=False)
        .sign(key, hashes.SHA256())
    )
    pki.write_public(path, pki.cert_pem(cert))
    return pki.Issued(cert=cert, key=key)


def test_no_trust_domain_in_roots_and_none_set_refuses_to_start(tmp_path: Path) -> None:
    root = _root_without_uri_san(tmp_path / "root.pem")
    leaf = pki.issue_leaf(root, "spiffe://x.consul/ns/default/dc/dc1/svc/db")
    pki.write_public(tmp_path / "db.pem", leaf.chain_pem)
    pki.write_private(tmp_path / "db-key.pem", leaf.key_pem)
    files = LeafFiles(tmp_path / "db.pem", tmp_path / "db-key.pem", leaf, None)  # type: ignore[arg-type]
    config = inbound_config("db", files, [tmp_path / "root.pem"], 8080, free_port())
    path = tmp_path / "proxy.yaml"
    path.write_text(yaml.safe_dump(config))
    done = run_proxy_cli("-config", str(path))
    assert done.returncode == 2, done.stderr
    assert "no trust domain" in done.stderr and "tls.trust_domain" in done.stderr
    assert "Traceback" not in done.stderr
    # Setting it is the fix.
    config["tls"]["trust_domain"] = "x.consul"
    proxy = start_proxy(tmp_path, "db-proxy", config)
    assert proxy.stop() == 0


def test_bad_trust_domain_value_is_a_config_error(tmp_path: Path, ca: ThrowawayCA) -> None:
    config = inbound_config("db", ca.leaf("db"), [ca.root_file()], 8080, free_port())
    config["tls"]["trust_domain"] = "spiffe://bad domain/"
    path = tmp_path / "proxy.yaml"
    path.write_text(yaml.safe_dump(config))
    done = run_proxy_cli("-config", str(path))
    assert done.returncode == 2
    assert f"{path}: tls.trust_domain: 'spiffe://bad domain/' is not a trust domain" in done.stderr


def test_trust_domain_flag_is_refused_in_consul_mode() -> None:
    done = run_proxy_cli("-sidecar-for", "web", "-trust-domain", "other.consul")
    assert done.returncode == 2
    assert "-trust-domain is for static mode" in done.stderr
