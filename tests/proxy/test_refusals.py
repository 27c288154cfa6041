# SPDX-License-Identifier: MPL-2.0
"""Peers that must be refused, and the app must never see: each checked at the socket and in
the metrics, with the echo app's accept counter as the witness."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.echo import EchoApp, echo_once
from tests.support.pki_files import ThrowawayCA
from tests.support.ports import free_port
from tests.support.proxy_process import ProxyProcess, start_proxy
from tests.support.static_mesh import inbound_config, outbound_config
from tests.support.tls_client import closed_without_data, tls_client_context
from tests.support.waits import wait_until


@pytest.fixture
def inbound(tmp_path: Path, ca: ThrowawayCA, app: EchoApp) -> Iterator[ProxyProcess]:
    db = ca.leaf("db")
    port = free_port()
    proc = start_proxy(
        tmp_path,
        "db-proxy",
        inbound_config("db", db, [ca.root_file()], app.port, port, handshake_timeout_ms=800),
    )
    proc.ports["public"] = port
    yield proc
    assert proc.stop() == 0


def _talk(port: int, ctx: ssl.SSLContext) -> bool:
    """Connect, try to exchange one byte; True when the proxy refused us (no data, closed)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        try:
            tls = ctx.wrap_socket(raw)
        except (ssl.SSLError, ConnectionError):
            return True  # refused during the handshake (TLS 1.2, or client-side checks)
        with tls:
            try:
                tls.sendall(b"hello")
            except (ssl.SSLError, ConnectionError):
                return True
            # TLS 1.3: the client's handshake ends before the server checks its certificate, so the
            # server's verdict arrives on our first read.
            return closed_without_data(tls)
    finally:
        raw.close()


def test_allowed_peer_reaches_the_app_and_no_alpn_is_selected(
    inbound: ProxyProcess, ca: ThrowawayCA, app: EchoApp
) -> None:
    web = ca.leaf("web")
    ctx = tls_client_context(web.cert, web.key, ca.root_file())
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", inbound.ports["public"]))) as s:
        assert s.selected_alpn_protocol() is None
        assert s.version() in ("TLSv1.2", "TLSv1.3")
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"
    assert app.accepts == 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_1_2_is_accepted_and_1_1_is_not(
    inbound: ProxyProcess, ca: ThrowawayCA, app: EchoApp
) -> None:
    web = ca.leaf("web")
    ctx = tls_client_context(web.cert, web.key, ca.root_file())
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", inbound.ports["public"]))) as s:
        assert s.version() == "TLSv1.2"
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"
    old = tls_client_context(web.cert, web.key, ca.root_file())
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with contextlib.suppress(ssl.SSLError):
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
    assert _talk(inbound.ports["public"], old)
    assert app.accepts == 1


def test_no_client_certificate(inbound: ProxyProcess, ca: ThrowawayCA, app: EchoApp) -> None:
    ctx = tls_client_context(None, None, ca.root_file())
    assert _talk(inbound.ports["public"], ctx)
    wait_until(lambda: inbound.metric_sum("handshake_failures_total", reason="no_client_cert") == 1)
    assert app.accepts == 0


def test_certificate_from_another_ca(
    inbound: ProxyProcess, ca: ThrowawayCA, app: EchoApp, tmp_path: Path
) -> None:
    other = ThrowawayCA.create(tmp_path / "other")
    web = other.leaf("web")
    # Trust the right server root so only the server's check can fail.
    ctx = tls_client_context(web.cert, web.key, ca.root_file())
    assert _talk(inbound.ports["public"], ctx)
    wait_until(lambda: inbound.metric_sum("handshake_failures_total", reason="unknown_ca") == 1)
    assert app.accepts == 0


def test_expired_certificate(inbound: ProxyProcess, ca: ThrowawayCA, app: EchoApp) -> None:
    web = ca.expired_leaf("web", name="web-expired")
    ctx = tls_client_context(web.cert, web.key, ca.root_file())
    assert _talk(inbound.ports["public"], ctx)
    wait_until(lambda: inbound.metric_sum("handshake_failures_total", reason="cert_expired") == 1)
    assert app.accepts == 0


def test_denied_source_service(inbound: ProxyProcess, ca: ThrowawayCA, app: EchoApp) -> None:
    billing = ca.leaf("billing")
    ctx = tls_client_context(billing.cert, billing.key, ca.root_file())
    assert _talk(inbound.ports["public"], ctx)
    wait_until(lambda: inbound.metric_sum("authz_denials_total", service="db") == 1)
    assert app.accepts == 0


def test_uri_san_that_is_not_a_service_identity(
    inbound: ProxyProcess, ca: ThrowawayCA, app: EchoApp
) -> None:
    agent = ca.leaf("x", name="agent", uri=f"spiffe://{ca.trust_domain}/agent/client/dc/dc1/id/1")
    ctx = tls_client_context(agent.cert, agent.key, ca.root_file())
    assert _talk(inbound.ports["public"], ctx)
    wait_until(lambda: inbound.metric_sum("handshake_failures_total", reason="bad_identity") == 1)
    assert app.accepts == 0


def test_peer_that_never_handshakes_is_dropped_at_the_deadline(
    inbound: ProxyProcess, app: EchoApp
) -> None:
    with socket.create_connection(("127.0.0.1", inbound.ports["public"]), timeout=10) as s:
        start = time.monotonic()
        s.sendall(b"\x16\x03\x01")  # the start of a record header, then silence
        assert closed_without_data(s, timeout=10)
        waited = time.monotonic() - start
    assert 0.6 <= waited < 5.0, waited  # handshake_timeout_ms is 800
    assert inbound.metric_sum("handshake_failures_total", reason="timeout") == 1
    assert app.accepts == 0


def test_wrong_identity_at_the_upstream_side(tmp_path: Path, ca: ThrowawayCA, app: EchoApp) -> None:
    """web expects db, but the address answers with a `cache` certificate."""
    cache_leaf, web = ca.leaf("cache"), ca.leaf("web")
    public, upstream = free_port(), free_port()
    impostor = start_proxy(
        tmp_path,
        "cache-proxy",
        inbound_config("cache", cache_leaf, [ca.root_file()], app.port, public),
    )
    target = {"address": f"127.0.0.1:{public}", "spiffe_id": ca.identity("db").uri}
    outbound = start_proxy(
        tmp_path, "web-proxy", outbound_config("web", web, [ca.root_file()], [target], upstream)
    )
    try:
        with socket.create_connection(("127.0.0.1", upstream), timeout=5) as s:
            s.sendall(b"secret")
            assert closed_without_data(s)
        assert outbound.metric_sum("handshake_failures_total", reason="peer_mismatch") == 1
        time.sleep(0.3)
        assert app.accepts == 0
    finally:
        assert outbound.stop() == 0
        assert impostor.stop() == 0


def test_upstream_tries_the_next_target(tmp_path: Path, ca: ThrowawayCA, app: EchoApp) -> None:
    db, web = ca.leaf("db"), ca.leaf("web")
    public, upstream, dead = free_port(), free_port(), free_port()
    inbound = start_proxy(
        tmp_path, "db-proxy", inbound_config("db", db, [ca.root_file()], app.port, public)
    )
    sid = ca.identity("db").uri
    targets = [
        {"address": f"127.0.0.1:{dead}", "spiffe_id": sid},
        {"address": f"127.0.0.1:{public}", "spiffe_id": sid},
    ]
    outbound = start_proxy(
        tmp_path,
        "web-proxy",
        outbound_config("web", web, [ca.root_file()], targets, upstream, connect_timeout_ms="2500"),
    )
    try:
        assert echo_once(upstream, b"second time lucky") == b"second time lucky"
        assert outbound.metric_sum("dial_failures_total", upstream="db") == 1
    finally:
        assert outbound.stop() == 0
        assert inbound.stop() == 0


def test_app_not_listening_closes_client_promptly_and_counts(
    tmp_path: Path, ca: ThrowawayCA
) -> None:
    db, web = ca.leaf("db"), ca.leaf("web")
    public, upstream, nothing = free_port(), free_port(), free_port()
    inbound = start_proxy(
        tmp_path, "db-proxy", inbound_config("db", db, [ca.root_file()], nothing, public)
    )
    target = {"address": f"127.0.0.1:{public}", "spiffe_id": ca.identity("db").uri}
    outbound = start_proxy(
        tmp_path, "web-proxy", outbound_config("web", web, [ca.root_file()], [target], upstream)
    )
    try:
        with socket.create_connection(("127.0.0.1", upstream), timeout=10) as s:
            start = time.monotonic()
            s.sendall(b"anyone there?")
            assert closed_without_data(s, timeout=10)
            assert time.monotonic() - start < 3.0
        wait_until(
            lambda: inbound.metric_sum("dial_failures_total", service="db", dst_type="local") == 1
        )
    finally:
        assert outbound.stop() == 0
        assert inbound.stop() == 0
