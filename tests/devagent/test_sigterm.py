# SPDX-License-Identifier: MPL-2.0
"""SIGTERM stops the dev agent at once, even while blocking queries wait (issue 13 item 6)."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from tests.support.devagent import DevAgent


def _open_blocking(address: str, path: str) -> socket.socket:
    """Send a blocking GET and leave it waiting (the reply comes at `wait` or a change)."""
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n".encode())
    return sock


def test_sigterm_with_open_blocking_queries_exits_within_two_seconds(tmp_path: Path) -> None:
    agent = DevAgent(tmp_path).start()
    assert agent.process is not None
    proc = agent.process
    try:
        agent.ok("PUT", "/v1/agent/service/register", {"Name": "web", "Port": 8080})
        _, headers, _ = agent.get("/v1/catalog/services")
        index = int(headers["X-Consul-Index"])
        paths = [
            f"/v1/catalog/services?index={index}&wait=5m",
            f"/v1/health/service/web?index={index}&wait=5m",
            f"/v1/catalog/service/web?index={index}&wait=5m",
            f"/v1/connect/intentions?index={index}&wait=5m",
            "/v1/agent/service/web?hash=nothing-matches&wait=5m",
        ]
        socks = [_open_blocking(agent.address, p) for p in paths]
        time.sleep(0.5)  # let every query reach its wait
        assert proc.poll() is None
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        elapsed = time.monotonic() - started
        assert code == 0, f"exit code {code} after {elapsed:.1f}s\n{agent.log_text()[-2000:]}"
        assert elapsed < 2.0, f"took {elapsed:.2f}s to stop"
        for sock in socks:
            sock.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        agent.process = None
    # The data was saved: the service registered before SIGTERM is there after a restart.
    again = DevAgent(tmp_path).start()
    try:
        services = again.ok("GET", "/v1/agent/services")
        assert "web" in services
    finally:
        again.stop()


def test_sigterm_answers_waiting_queries_before_closing(tmp_path: Path) -> None:
    """A blocking query open at SIGTERM gets its answer (current state), not a reset."""
    agent = DevAgent(tmp_path).start()
    assert agent.process is not None
    proc = agent.process
    replies: list[bytes] = []
    try:
        _, headers, _ = agent.get("/v1/catalog/services")
        index = int(headers["X-Consul-Index"])
        sock = _open_blocking(agent.address, f"/v1/catalog/services?index={index}&wait=5m")

        def read() -> None:
            data = b""
            try:
                while chunk := sock.recv(65536):
                    data += chunk
            except OSError:
                pass
            replies.append(data)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        reader.join(5)
        sock.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        agent.process = None
    assert replies and replies[0].startswith(b"HTTP/1.1 200"), replies
