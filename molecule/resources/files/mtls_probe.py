#!/usr/bin/python3
# SPDX-License-Identifier: MPL-2.0
"""Probe a sidecar's public listener from another machine without mesh credentials.

A meshkit sidecar must speak TLS and refuse clients that present no certificate from the mesh
CA: plain text gets no HTTP answer, TLS without a client certificate gets no HTTP answer either.
Prints one JSON object; exit 0 when both are refused, 1 when anything answered.
"""

import json
import socket
import ssl
import sys

REQUEST = b"GET / HTTP/1.0\r\nHost: probe\r\n\r\n"


def read_some(conn: socket.socket) -> bytes:
    try:
        return conn.recv(4096)
    except (ssl.SSLError, OSError) as exc:
        return f"<{type(exc).__name__}: {exc}>".encode()


def plain(host: str, port: int) -> str:
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(REQUEST)
        return read_some(conn)[:200].decode(errors="replace")


def tls_without_client_cert(host: str, port: int) -> tuple[str, int]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=5) as raw:
        try:
            conn = ctx.wrap_socket(raw)
        except (ssl.SSLError, OSError) as exc:
            return f"<handshake refused: {exc}>", 0
        server_cert = conn.getpeercert(binary_form=True) or b""
        try:
            conn.sendall(REQUEST)
        except (ssl.SSLError, OSError) as exc:
            return f"<send failed: {exc}>", len(server_cert)
        return read_some(conn)[:200].decode(errors="replace"), len(server_cert)


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    plain_answer = plain(host, port)
    tls_answer, cert_len = tls_without_client_cert(host, port)
    refused = "HTTP/" not in plain_answer and "HTTP/" not in tls_answer
    print(
        json.dumps(
            {
                "target": f"{host}:{port}",
                "plain_text_answer": plain_answer,
                "tls_without_client_cert_answer": tls_answer,
                "server_certificate_bytes": cert_len,
                "refused": refused,
            }
        )
    )
    return 0 if refused else 1


if __name__ == "__main__":
    sys.exit(main())
