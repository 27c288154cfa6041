# SPDX-License-Identifier: MPL-2.0
"""Consul mode: a leaf signed by Consul's own root but naming another trust domain is refused,
with `-authz local` (the intentions cache, the default) and `-authz agent` (issue 13 item 2).

The test gives the real dev agent a CA key it knows (`PUT /v1/connect/ca/configuration`), so it
can sign a leaf for `spiffe://<other>.consul/.../svc/web` that chains to a trusted root.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from meshkit_tools import pki
from tests.support.devagent import DevAgent
from tests.support.echo import App
from tests.support.ports import free_port
from tests.support.proxy_process import ProxyProcess
from tests.support.waits import wait_until

FAILURES = "meshkit_proxy_handshake_failures_total"


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[DevAgent]:
    a = DevAgent(tmp_path / "agent").start()
    try:
        yield a
    finally:
        a.stop(timeout=5)


def _own_root(agent: DevAgent) -> tuple[pki.Issued, str]:
    """Rotate the agent's CA to a key we hold; the active root and Consul's trust domain."""
    key = pki.generate_key()
    config = agent.ok("GET", "/v1/connect/ca/configuration")
    agent.ok(
        "PUT",
        "/v1/connect/ca/configuration",
        {"Provider": "consul", "Config": {**config["Config"], "PrivateKey": pki.key_pem(key)}},
    )
    roots = agent.ok("GET", "/v1/agent/connect/ca/roots")
    active = next(r for r in roots["Roots"] if r["Active"])
    cert = x509.load_pem_x509_certificate(active["RootCert"].encode())
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert ski == pki.key_id(key.public_key())  # the active root is ours to sign with
    return pki.Issued(cert=cert, key=key), str(roots["TrustDomain"])


def _client(tmp_path: Path, name: str, root: pki.Issued, uri: str) -> ssl.SSLContext:
    leaf = pki.issue_leaf(root, uri)
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}-key.pem"
    pki.write_public(cert, leaf.chain_pem)
    pki.write_private(key, leaf.key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata=root.cert_pem)
    ctx.load_cert_chain(cert, key)
    return ctx


def _exchange(port: int, ctx: ssl.SSLContext, payload: bytes) -> bytes:
    """Echo through the sidecar (`E` selects the app's echo); b"" when refused."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                tls.sendall(b"E" + payload)
                want = len(b"api:") + len(payload)
                got = b""
                while len(got) < want and (chunk := tls.recv(65536)):
                    got += chunk
                return got
        except (ssl.SSLError, ConnectionError, TimeoutError):
            return b""


@pytest.mark.parametrize("authz", ["local", "agent"])
def test_foreign_trust_domain_gets_zero_bytes_to_the_app(
    agent: DevAgent, tmp_path: Path, authz: str
) -> None:
    root, trust_domain = _own_root(agent)
    app = App("api")
    sidecar_port = free_port()
    agent.register(
        {
            "Name": "api",
            "ID": "api",
            "Port": app.port,
            "Address": "127.0.0.1",
            "Connect": {"SidecarService": {"Port": sidecar_port}},
        }
    )
    env = {"CONSUL_HTTP_ADDR": agent.address}
    proxy = ProxyProcess(tmp_path, "api", ["-sidecar-for", "api", "-authz", authz], env)
    proxy.start().wait_ready()
    try:
        other = "0badf00d-0000-4000-8000-000000000000.consul"
        assert other != trust_domain
        foreign = _client(tmp_path, "foreign", root, f"spiffe://{other}/ns/default/dc/dc1/svc/web")
        assert _exchange(sidecar_port, foreign, b"secret") == b""
        wait_until(
            lambda: (proxy.metric(FAILURES, reason="foreign_trust_domain") or 0) == 1,
            5,
            what="foreign_trust_domain counted",
        )
        time.sleep(0.2)
        assert app.accepted == 0
        assert f"trust domain {other} is not ours" in proxy.log()
        # A leaf of Consul's own trust domain, same root, same service name, gets through.
        own = _client(tmp_path, "own", root, f"spiffe://{trust_domain}/ns/default/dc/dc1/svc/web")
        assert _exchange(sidecar_port, own, b"hello") == b"api:hello"
        assert app.accepted == 1
    finally:
        with contextlib.suppress(Exception):
            proxy.stop(timeout=5)
        app.close()
