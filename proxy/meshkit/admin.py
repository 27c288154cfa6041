# SPDX-License-Identifier: MPL-2.0
"""The admin listener: `/metrics`, `/ready`, `/health` on loopback.

Three GET endpoints with `Connection: close` do not justify an HTTP framework in every proxy
process (import time and memory count per worker); requests are bounded in size and time.

With static mode's worker processes, worker 0 runs the only admin listener and answers for
all of them: `/metrics` sums every worker's counters and gauges, `/ready` is 200 only when
every worker is ready, and a worker that does not answer within `workers.QUERY_TIMEOUT` is
reported (`meshkit_proxy_workers_up`, the `/ready` reasons), never waited on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from meshkit import metrics as m
from meshkit.workers import WorkerPool, WorkerState, aggregate, local_state

if TYPE_CHECKING:
    from meshkit.runtime import Proxy

log = logging.getLogger("meshkit.admin")

MAX_REQUEST = 8192
REQUEST_TIMEOUT = 5.0


class AdminServer:
    def __init__(self, proxy: Proxy, pool: WorkerPool | None = None) -> None:
        self.proxy = proxy
        self.pool = pool
        self.server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(self._handle, host, port, reuse_address=True)
        bound = int(self.server.sockets[0].getsockname()[1])
        log.info("admin listener on %s:%d", host, bound)
        return bound

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def states(self) -> tuple[list[WorkerState], dict[int, str]]:
        """Every worker's state that arrived in time, and why the others' did not."""
        states = [local_state(self.proxy, 0)]
        missing: dict[int, str] = {}
        if self.pool is not None:
            for child, answer in await self.pool.query_all():
                if isinstance(answer, str):
                    missing[child.index] = answer
                else:
                    states.append(answer)
        if missing:
            log.warning(
                "workers not answering: %s",
                "; ".join(f"worker {i}: {w}" for i, w in missing.items()),
            )
        return states, missing

    async def respond(self, method: str, path: str) -> tuple[int, str, str]:
        path = path.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", "method not allowed\n"
        if path == "/metrics":
            states, missing = await self.states()
            counters, gauges = aggregate(states)
            workers = self.pool.count if self.pool is not None else 1
            gauges[("workers", ())] = workers
            gauges[("workers_up", ())] = len(states)
            if missing:
                gauges[("ready", ())] = 0
            return 200, "text/plain; version=0.0.4; charset=utf-8", m.render(counters, gauges)
        if path == "/ready":
            if self.pool is None:
                reasons = self.proxy.not_ready_reasons()
            else:
                states, missing = await self.states()
                found = [(s.worker, r) for s in states for r in s.reasons] + list(missing.items())
                reasons = [f"worker {i}: {r}" for i, r in sorted(found, key=lambda x: x[0])]
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
            status, ctype, body = await self.respond(method, path)
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
