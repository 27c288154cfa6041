# SPDX-License-Identifier: MPL-2.0
"""Allowed traffic end to end through real proxy processes: bulk, half-close, many connections."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.support.echo import EchoApp, echo_once
from tests.support.pki_files import ThrowawayCA
from tests.support.static_mesh import Pair, start_pair, stop_pair
from tests.support.waits import wait_until


@pytest.mark.slow
def test_256_mib_round_trip_is_intact(pair: Pair, app: EchoApp) -> None:
    size = 256 << 20
    block = hashlib.sha256(b"seed").digest() * 32768  # 1 MiB, not all one byte
    sent = hashlib.sha256()
    received = hashlib.sha256()
    got = 0
    with socket.create_connection(("127.0.0.1", pair.upstream_port), timeout=60) as s:

        def send() -> None:
            for i in range(size // len(block)):
                chunk = block[i % 7 :] + block[: i % 7]  # vary the content per MiB
                sent.update(chunk)
                s.sendall(chunk)
            s.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        while True:
            data = s.recv(1 << 20)
            if not data:
                break
            received.update(data)
            got += len(data)
        sender.join(60)
    assert got == size
    assert received.hexdigest() == sent.hexdigest()
    assert app.accepts == 1
    wait_until(lambda: pair.inbound.metric_sum("inbound_rx_bytes_total") == size)
    assert pair.inbound.metric_sum("inbound_tx_bytes_total") == size
    assert pair.outbound.metric_sum("upstream_tx_bytes_total", upstream="db") == size
    assert pair.outbound.metric_sum("upstream_rx_bytes_total", upstream="db") == size


def test_half_close_still_delivers_the_full_response(pair: Pair, app: EchoApp) -> None:
    payload = b"question " * 50000  # 450 KB: the reply flows after our write side is shut
    assert echo_once(pair.upstream_port, payload) == payload
    assert app.half_closes == 1


def test_half_close_keeps_the_other_direction_open(pair: Pair, app: EchoApp) -> None:
    with socket.create_connection(("127.0.0.1", pair.upstream_port), timeout=5) as s:
        s.sendall(b"abc")
        assert s.recv(10) == b"abc"
        s.shutdown(socket.SHUT_WR)
        # The echo app sees our EOF, answers with its own; we read to the end cleanly.
        assert s.recv(10) == b""
    wait_until(lambda: app.half_closes == 1)


def test_open_connection_gauges_and_close(pair: Pair, app: EchoApp) -> None:
    with socket.create_connection(("127.0.0.1", pair.upstream_port), timeout=5) as s:
        s.sendall(b"x")
        assert s.recv(1) == b"x"
        assert pair.inbound.metric_sum("inbound_conns", service="db") == 1
        assert pair.outbound.metric_sum("upstream_conns", upstream="db", dst_type="service") == 1
    wait_until(lambda: pair.inbound.metric_sum("inbound_conns") == 0)
    wait_until(lambda: pair.outbound.metric_sum("upstream_conns") == 0)


@pytest.mark.slow
def test_1000_concurrent_connections(tmp_path: Path, ca: ThrowawayCA, app: EchoApp) -> None:
    count = 1000
    socks: list[socket.socket] = []
    pair = start_pair(tmp_path, ca, app, timeout_ms=120000)
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", pair.upstream_port), timeout=120)
            socks.append(s)
        for i, s in enumerate(socks):
            s.sendall(f"conn-{i:04d}".encode())
        for i, s in enumerate(socks):
            expected = f"conn-{i:04d}".encode()
            buf = b""
            while len(buf) < len(expected):
                chunk = s.recv(64)
                assert chunk, f"connection {i} closed early"
                buf += chunk
            assert buf == expected
        wait_until(lambda: app.open == count, timeout=60)
        assert pair.inbound.metric_sum("inbound_conns") == count
        assert pair.outbound.metric_sum("upstream_conns") == count
        for s in socks:
            s.close()
        assert app.accepts == count
        wait_until(lambda: pair.outbound.metric_sum("upstream_conns") == 0, timeout=15)
        assert pair.outbound.metric_sum("dial_failures_total") == 0
        assert pair.outbound.metric_sum("handshake_failures_total") == 0
    finally:
        for s in socks:
            s.close()
        stop_pair(pair)


def test_sigterm_drains_open_connections_then_exits_zero(pair: Pair, app: EchoApp) -> None:
    import signal

    with socket.create_connection(("127.0.0.1", pair.upstream_port), timeout=5) as s:
        s.sendall(b"before")
        assert s.recv(6) == b"before"
        pair.outbound.signal(signal.SIGTERM)
        # No new connections are accepted...
        wait_until(lambda: _refused(pair.upstream_port), timeout=5)
        # ...but the open one keeps working until it ends.
        time.sleep(0.2)
        s.sendall(b"during")
        assert s.recv(6) == b"during"
        assert pair.outbound.process.poll() is None
    pair.outbound.process.wait(10)
    assert pair.outbound.process.returncode == 0


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_worker_processes_share_the_ports_and_stop_together(
    tmp_path: Path, ca: ThrowawayCA, app: EchoApp
) -> None:
    import subprocess

    from tests.support.ports import free_port
    from tests.support.proxy_process import start_proxy
    from tests.support.static_mesh import inbound_config

    db = ca.leaf("db")
    web = ca.leaf("web")
    public = free_port()
    inbound = start_proxy(
        tmp_path,
        "db-proxy",
        inbound_config("db", db, [ca.root_file()], app.port, public),
        "-workers",
        "2",
    )
    try:
        children = subprocess.run(
            ["ps", "--ppid", str(inbound.process.pid), "-o", "pid="],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        assert len(children) == 1
        from tests.support.tls_client import tls_client_context

        ctx = tls_client_context(web.cert, web.key, ca.root_file())
        for i in range(20):
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", public), timeout=5)) as s:
                s.sendall(b"%02d" % i)
                assert s.recv(2) == b"%02d" % i
        assert app.accepts == 20
    finally:
        code = inbound.stop()
    assert code == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)
