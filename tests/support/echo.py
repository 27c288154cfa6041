# SPDX-License-Identifier: MPL-2.0
"""Real loopback applications behind and in front of the proxies, and their clients.

Two servers, because the tests need two wire behaviours:

`EchoApp` echoes every byte back unchanged and answers a half-close with a half-close, in its
own thread and event loop; it counts accepts, open connections and half-closes (the static-mode
data-path tests check byte counts and FIN propagation through the proxies).

`App` is a threaded TCP server with two behaviours picked by the first byte a client sends:
`E` answers with its name, then echoes everything back (so a Consul-mode test sees which
instance behind a service answered); `H` reads to EOF and answers the SHA-256 of what it read
(for large transfers checked by hash). It counts accepted connections so a test can prove a
denied peer never reached it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

CHUNK = 1 << 20


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


class App:
    def __init__(self, name: str, port: int = 0) -> None:
        self.name = name
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(512)
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(120)
                first = conn.recv(1)
                if first == b"E":
                    conn.sendall(self.name.encode() + b":")
                    while data := conn.recv(CHUNK):
                        conn.sendall(data)
                elif first == b"H":
                    digest = hashlib.sha256()
                    total = 0
                    while data := conn.recv(CHUNK):
                        digest.update(data)
                        total += len(data)
                    conn.sendall(f"{self.name}:{total}:{digest.hexdigest()}".encode())
                    conn.shutdown(socket.SHUT_WR)
            except OSError:
                return

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def echo(port: int, payload: bytes = b"ping", timeout: float = 5.0) -> bytes:
    """One request/response through `port`; returns b'<app name>:<payload>' or raises."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"E" + payload)
        want = len(payload)
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = s.recv(65536)
            if not data:
                break
            buf += data
            if b":" in buf and len(buf.split(b":", 1)[1]) >= want:
                return buf
        raise ConnectionError(f"echo via :{port} got {buf!r}")


def try_echo(port: int, timeout: float = 3.0) -> bool:
    try:
        return echo(port, timeout=timeout).endswith(b":ping")
    except OSError:
        return False


class OpenEcho:
    """A long-lived connection that can be checked again and again (survives reconfigs)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(b"E")
        self.prefix_read = False

    def roundtrip(self, payload: bytes = b"still-here") -> bool:
        try:
            self.sock.sendall(payload)
            buf = b""
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                data = self.sock.recv(65536)
                if not data:
                    return False
                buf += data
                if buf.endswith(payload):
                    return True
            return False
        except OSError:
            return False

    def close(self) -> None:
        self.sock.close()


def random_stream(total: int) -> Iterator[bytes]:
    """Pseudo-random chunks (fast: one random block rotated), reproducible per call."""
    block = os.urandom(CHUNK)
    sent = 0
    i = 0
    while sent < total:
        n = min(CHUNK, total - sent)
        start = (i * 7919) % CHUNK
        chunk = (block[start:] + block[:start])[:n]
        sent += n
        i += 1
        yield chunk


def hashed_transfer(port: int, total: int, timeout: float = 600.0) -> tuple[str, str]:
    """Send `total` bytes through `port`; return (our sha256, the app's answer)."""
    digest = hashlib.sha256()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"H")
        for chunk in random_stream(total):
            digest.update(chunk)
            s.sendall(chunk)
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while data := s.recv(65536):
            answer += data
    return digest.hexdigest(), answer.decode()


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
