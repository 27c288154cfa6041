# SPDX-License-Identifier: MPL-2.0
"""Real loopback applications behind and in front of the proxies, for the acceptance tests.

`App` is a threaded TCP server with two behaviours picked by the first byte a client sends:
`E` echoes everything back; `H` reads to EOF and answers the SHA-256 of what it read (for
large transfers checked by hash). It counts accepted connections so a test can prove a denied
peer never reached it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator

CHUNK = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def wait_until(predicate: object, timeout: float, interval: float = 0.05, what: str = "") -> float:
    """Poll until true; returns the seconds it took; raises AssertionError at the timeout."""
    start = time.monotonic()
    assert callable(predicate)
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(interval)


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
