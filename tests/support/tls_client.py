# SPDX-License-Identifier: MPL-2.0
"""The client side of a proxy's TLS listener: a context with chosen roots and client
certificate, and a check that the proxy closed a connection without sending anything."""

from __future__ import annotations

import contextlib
import socket
import ssl
from pathlib import Path


def tls_client_context(cert: Path | None, key: Path | None, *roots: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    for root in roots:
        ctx.load_verify_locations(cafile=str(root))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key) if key else None)
    return ctx


def closed_without_data(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when the peer closes (FIN or RST) before sending any byte."""
    sock.settimeout(timeout)
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        data = sock.recv(1)
        return data == b""
    return True
