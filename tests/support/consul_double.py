# SPDX-License-Identifier: MPL-2.0
"""A small real HTTP server that answers with recorded Consul 1.7.14 responses.

It doubles Consul (not our code) so the client's wire behaviour (headers, query strings,
blocking parameters, TLS, unix sockets) can be checked before and apart from the dev agent.
Each endpoint's current body and index can be changed by the test; blocking requests wait for
such a change or for their `wait`, like the agent does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path("/work/shared/fixtures/consul-1.7.14")


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def parse_wait(value: str) -> float:
    if value.endswith("ms"):
        return float(value[:-2]) / 1000
    if value.endswith("s"):
        return float(value[:-1])
    if value.endswith("m"):
        return float(value[:-1]) * 60
    return float(value)


@dataclass
class Endpoint:
    body: Any
    index: int = 1
    content_hash: str | None = None
    status: int = 200
    changed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Seen:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    url: str


class ConsulDouble:
    def __init__(self) -> None:
        self.endpoints: dict[str, Endpoint] = {}
        self.seen: list[Seen] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    def set(
        self,
        path: str,
        body: Any,
        *,
        index: int | None = None,
        content_hash: str | None = None,
        status: int = 200,
    ) -> None:
        ep = self.endpoints.get(path)
        if ep is None:
            self.endpoints[path] = Endpoint(body, index or 1, content_hash, status)
            return
        ep.body, ep.status = body, status
        ep.index = index if index is not None else ep.index + 1
        ep.content_hash = content_hash
        old, ep.changed = ep.changed, asyncio.Event()
        old.set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(
            Seen(
                request.method,
                request.path,
                list(request.query.items()),
                dict(request.headers),
                str(request.rel_url),
            )
        )
        ep = self.endpoints.get(request.path)
        if ep is None:
            return web.Response(status=404, text=f"unknown path {request.path}")
        wait = parse_wait(request.query.get("wait", "300s"))
        by_index = "index" in request.query and int(request.query["index"]) >= ep.index
        by_hash = "hash" in request.query and request.query["hash"] == ep.content_hash
        if by_index or by_hash:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ep.changed.wait(), wait)
        headers = {"X-Consul-Index": str(ep.index)}
        if ep.content_hash:
            headers["X-Consul-ContentHash"] = ep.content_hash
        if ep.status != 200:
            return web.Response(status=ep.status, text=str(ep.body), headers=headers)
        return web.json_response(ep.body, headers=headers)

    async def start(
        self, *, ssl_context: ssl.SSLContext | None = None, unix_path: str | None = None
    ) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.5)  # blocked handlers: cut
        await self.runner.setup()
        site: web.BaseSite
        if unix_path:
            site = web.UnixSite(self.runner, unix_path)
            await site.start()
            return
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=ssl_context)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None)
        assert sockets
        self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
