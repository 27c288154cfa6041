# SPDX-License-Identifier: MPL-2.0
"""Real processes and sockets for proxy tests: an echo app, proxy processes, a TLS client."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Echo(asyncio.Protocol):
    def __init__(self, app: EchoApp) -> None:
        self.app = app

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.app.accepts += 1
        self.app.open += 1

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def eof_received(self) -> bool:
        self.app.half_closes += 1
        self.transport.write_eof()  # after everything echoed: half-close back
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.app.open -= 1


class EchoApp:
    """A loopback echo server in its own thread and event loop; counts accepts."""

    def __init__(self) -> None:
        self.accepts = 0
        self.open = 0
        self.half_closes = 0
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self.server = await self.loop.create_server(
                lambda: _Echo(self), "127.0.0.1", 0, backlog=4096
            )
            self.port = self.server.sockets[0].getsockname()[1]
            self._ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def start(self) -> EchoApp:
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@dataclass
class ProxyProc:
    name: str
    config_path: Path
    admin_port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()

    def metrics(self) -> dict[str, float]:
        """`name{labels}` -> value, for exact-series assertions."""
        status, text = self.get("/metrics")
        assert status == 200
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def metric_sum(self, prefix: str, **labels: str) -> float:
        total = 0.0
        for key, value in self.metrics().items():
            if key.split("{", 1)[0] != "meshkit_proxy_" + prefix:
                continue
            if all(f'{k}="{v}"' in key for k, v in labels.items()):
                total += value
        return total

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.logs()}")
            try:
                status, body = self.get("/ready", timeout=0.5)
                if status == 200:
                    return
                last = body
            except OSError as exc:
                last = str(exc)
            time.sleep(0.05)
        raise AssertionError(f"{self.name} not ready: {last}\n{self.logs()}")

    def logs(self) -> str:
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)


def proxy_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "meshkit.proxy_main", *args]


def proxy_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "proxy") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_proxy_cli(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run to completion (config-error tests)."""
    return subprocess.run(
        proxy_command(*args), env=proxy_env(), capture_output=True, text=True, timeout=timeout
    )


def start_proxy(
    tmp: Path, name: str, config: dict[str, Any], *extra: str, ready: bool = True
) -> ProxyProc:
    admin_port = free_port()
    config = dict(config)
    config.setdefault("admin", {"bind": f"127.0.0.1:{admin_port}"})
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    log_path = tmp / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            proxy_command("-config", str(path), "-log-level", "debug", *extra),
            env=proxy_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    p = ProxyProc(name, path, admin_port, proc, log_path)
    if ready:
        p.wait_ready()
    return p


def tls_client_context(cert: Path | None, key: Path | None, *roots: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    for root in roots:
        ctx.load_verify_locations(cafile=str(root))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key) if key else None)
    return ctx


def wait_until(predicate: Any, timeout: float = 5.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def echo_once(port: int, payload: bytes = b"ping", timeout: float = 5.0) -> bytes:
    """Send (from a thread), half-close, read to EOF: the whole reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        errors: list[BaseException] = []

        def send() -> None:
            try:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
            except OSError as exc:
                errors.append(exc)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        chunks = []
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        sender.join(timeout)
        if errors:
            raise errors[0]
    return b"".join(chunks)


def closed_without_data(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when the peer closes (FIN or RST) before sending any byte."""
    sock.settimeout(timeout)
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        data = sock.recv(1)
        return data == b""
    return True
