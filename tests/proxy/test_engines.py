# SPDX-License-Identifier: MPL-2.0
"""The two TLS engines (pyOpenSSL/OpenSSL 4.0 and Python's ssl) interoperate and refuse alike."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support.echo import EchoApp, echo_once
from tests.support.pki_files import ThrowawayCA
from tests.support.ports import free_port
from tests.support.proxy_process import start_proxy
from tests.support.static_mesh import inbound_config, outbound_config
from tests.support.tls_client import closed_without_data, tls_client_context
from tests.support.waits import wait_until


@pytest.mark.parametrize(
    ("out_engine", "in_engine"), [("stdlib", "openssl"), ("openssl", "stdlib")]
)
def test_mixed_engines_carry_traffic_and_half_close(
    tmp_path: Path, ca: ThrowawayCA, app: EchoApp, out_engine: str, in_engine: str
) -> None:
    # An intermediate CA: both engines must send and use the chain.
    ica = ThrowawayCA.create(tmp_path / "ica", intermediate=True)
    db, web = ica.leaf("db"), ica.leaf("web")
    public, upstream = free_port(), free_port()
    inbound = start_proxy(
        tmp_path,
        "db-proxy",
        inbound_config("db", db, [ica.root_file()], app.port, public),
        "-tls-engine",
        in_engine,
    )
    target = {"address": f"127.0.0.1:{public}", "spiffe_id": ica.identity("db").uri}
    outbound = start_proxy(
        tmp_path,
        "web-proxy",
        outbound_config("web", web, [ica.root_file()], [target], upstream),
        "-tls-engine",
        out_engine,
    )
    try:
        payload = bytes(range(256)) * 8192  # 2 MiB
        assert echo_once(upstream, payload, timeout=30) == payload
        wait_until(lambda: app.half_closes == 1)
        assert f"TLS engine: {in_engine}" in inbound.log()
        assert f"TLS engine: {out_engine}" in outbound.log()
    finally:
        codes = outbound.stop(), inbound.stop()
    assert codes == (0, 0)


@pytest.mark.parametrize("engine", ["stdlib", "openssl"])
def test_refusal_reasons_match(tmp_path: Path, ca: ThrowawayCA, app: EchoApp, engine: str) -> None:
    db = ca.leaf("db")
    public = free_port()
    inbound = start_proxy(
        tmp_path,
        "db-proxy",
        inbound_config("db", db, [ca.root_file()], app.port, public),
        "-tls-engine",
        engine,
    )
    expired = ca.expired_leaf("web", name="web-old")
    other = ThrowawayCA.create(tmp_path / "other").leaf("web")
    try:
        for cert, key in ((None, None), (expired.cert, expired.key), (other.cert, other.key)):
            ctx = tls_client_context(cert, key, ca.root_file())
            raw = socket.create_connection(("127.0.0.1", public), timeout=5)
            try:
                tls = ctx.wrap_socket(raw)
                tls.sendall(b"x")
                assert closed_without_data(tls)
            except (ConnectionError, OSError):
                pass
            finally:
                raw.close()
        for reason in ("no_client_cert", "cert_expired", "unknown_ca"):
            wait_until(
                lambda r=reason: inbound.metric_sum("handshake_failures_total", reason=r) == 1,
                what=lambda r=reason: f"{r}: {inbound.admin('/metrics')[1]}",
            )
        assert app.accepts == 0
    finally:
        code = inbound.stop()
    assert code == 0
