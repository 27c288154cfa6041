# SPDX-License-Identifier: MPL-2.0
"""One bounded `GET /ready` on a sidecar's admin listener, from the host parent.

The parent has no event loop (it forks), so this is a blocking socket with a short timeout,
called between two signal waits: SIGTERM and SIGCHLD wait at most `TIMEOUT` seconds.
"""

from __future__ import annotations

import socket

TIMEOUT = 0.5
MAX_STATUS_LINE = 256


def address(admin_bind: str) -> tuple[str, int]:
    """`MESHKIT_ADMIN_BIND` (`HOST:PORT`, `[V6]:PORT`) as the address to connect to: a wildcard
    host is asked on the loopback of its family."""
    host, _, port = admin_bind.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, int(port)


def probe(admin_bind: str, timeout: float = TIMEOUT) -> str:
    """An empty string when `/ready` answers 200, else what it answered (or why it did not)."""
    try:
        host, port = address(admin_bind)
    except ValueError:
        return f"{admin_bind!r} is not HOST:PORT"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"GET /ready HTTP/1.0\r\nHost: %s\r\n\r\n" % host.encode())
            head = sock.recv(MAX_STATUS_LINE)
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ", 2)
    if len(parts) >= 2 and parts[1] == "200":
        return ""
    return line or "no answer"
