"""The admin listener: `/metrics`, `/ready`, `/health` on loopback.

Three GET endpoints with `Connection: close` do not justify an HTTP framework in every proxy
process (import time and memory count per worker); requests are bounded in size and time.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meshkit.runtime import Proxy

log = logging.getLogger("meshkit.admin")

MAX_REQUEST = 8192
REQUEST_TIMEOUT = 5.0


class AdminServer:
    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(self._handle, host, port, reuse_address=True)
        bound = int(self.server.sockets[0].getsockname()[1])
        log.info("admin listener on %s:%d", host, bound)
        return bound

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    def respond(self, method: str, path: str) -> tuple[int, str, str]:
        path = path.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", "method not allowed\n"
        proxy = self.proxy
        if path == "/metrics":
            proxy.metrics.set("ready", (), 1 if proxy.ready else 0)
            return 200, "text/plain; version=0.0.4; charset=utf-8", proxy.metrics.render()
        if path == "/ready":
            reasons = proxy.not_ready_reasons()
            if reasons:
                return 503, "text/plain", "not ready: " + "; ".join(reasons) + "\n"
            return 200, "text/plain", "ready\n"
        if path == "/health":
            return 200, "text/plain", "ok\n"
        return 404, "text/plain", "not found\n"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > MAX_REQUEST:
                raise ValueError("request too large")
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) != 3:
                raise ValueError("bad request line")
            method, path = parts[0], parts[1]
            status, ctype, body = self.respond(method, path)
            payload = body.encode()
            reason = {
                200: "OK",
                404: "Not Found",
                405: "Method Not Allowed",
                503: "Service Unavailable",
            }
            writer.write(
                (
                    f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\n"
                    f"Content-Type: {ctype}\r\nContent-Length: {len(payload)}\r\n"
                    "Connection: close\r\n\r\n"
                ).encode()
                + (payload if method != "HEAD" else b"")
            )
            await writer.drain()
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        except ConnectionError:
            pass
        finally:
            writer.close()
