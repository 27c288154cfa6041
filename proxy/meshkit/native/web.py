# SPDX-License-Identifier: MPL-2.0
"""aiohttp integration: serve an `aiohttp.web` app as a native mesh service, and call mesh
services with `aiohttp.ClientSession` at `http://<service>.service.consul/...`.

aiohttp is the stack here because both of its halves expose the seam we need: the server takes
any protocol factory (so the peer is authorized before aiohttp's request handler exists) and the
client connector owns the dial (so every connection goes through the mesh dial loop with its
identity check). The proxy itself does not use aiohttp, so the host package does not install it:
applications that use this module install the `web` extra (`pip install 'meshkit[web]'`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

try:
    import aiohttp
    from aiohttp import web
    from aiohttp.client_proto import ResponseHandler
    from aiohttp.client_reqrep import ClientRequest
except ImportError as exc:  # one line that names the fix, not aiohttp's traceback
    raise ImportError(
        f"meshkit.native.web needs aiohttp ({exc}); install the extra: pip install 'meshkit[web]'"
    ) from None

from meshkit import tls
from meshkit.native.destination import destination_of_host
from meshkit.native.service import peer_of

if TYPE_CHECKING:
    from aiohttp.tracing import Trace

    from meshkit.native.service import Service


class NativeSite(web.BaseSite):
    """Like `web.TCPSite`, with the mesh TLS context and the peer guard.

    runner = web.AppRunner(app); await runner.setup()
    await NativeSite(runner, svc, "0.0.0.0", 8443).start()
    """

    __slots__ = ("_bound", "_host", "_port", "_service")

    def __init__(
        self, runner: web.BaseRunner, service: Service, host: str | None, port: int, **kw: Any
    ) -> None:
        super().__init__(runner, ssl_context=None, **kw)
        self._host, self._port, self._service = host, port, service
        self._bound = port

    @property
    def name(self) -> str:
        return f"mesh://{self._host or '0.0.0.0'}:{self._bound} ({self._service.name})"

    @property
    def port(self) -> int:
        return self._bound

    async def start(self) -> None:
        await self._service.ready()
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._service.protocol_guard(server),
            self._host,
            self._port,
            ssl=self._service.server_ssl_context(),
            ssl_handshake_timeout=self._service.handshake_timeout_s,
            backlog=self._backlog,
            reuse_address=True,
        )
        if self._server.sockets:
            self._bound = self._server.sockets[0].getsockname()[1]


def peer(request: web.Request) -> tls.PeerIdentity:
    """The calling service's verified identity (`peer(request).service.service` is its name)."""
    return peer_of(request)


class MeshConnector(aiohttp.TCPConnector):
    """Dials `http://<name>.service.consul/`, `<q>.query.consul`, or a bare service name
    through the mesh: discovery, mTLS with our leaf, the server's identity checked, the next
    instance tried on failure within the request's connect timeout (default 10 s)."""

    def __init__(self, service: Service, **kwargs: Any) -> None:
        kwargs.setdefault("limit", 100)
        super().__init__(**kwargs)
        self._mesh = service

    async def _create_connection(
        self, req: ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> ResponseHandler:
        if req.url.scheme != "http":
            raise aiohttp.InvalidURL(
                f"{req.url}: use http:// (the mesh adds mTLS); https:// would be TLS twice"
            )
        host = req.url.raw_host or ""
        dest = destination_of_host(host)
        budget = timeout.sock_connect or timeout.connect or timeout.total or 10.0
        _, proto = await self._mesh.dial(dest, self._factory, timeout=budget)
        assert isinstance(proto, ResponseHandler)
        return proto


def client_session(
    service: Service, *, keepalive_timeout: float = 15.0, **kwargs: Any
) -> aiohttp.ClientSession:
    """An `aiohttp.ClientSession` whose every connection goes through the mesh.

    As in Consul, intentions are checked when a connection is set up: a pooled keep-alive
    connection stays usable after a deny until it idles out (`keepalive_timeout`, seconds).
    """
    connector = MeshConnector(service, keepalive_timeout=keepalive_timeout)
    return aiohttp.ClientSession(connector=connector, trust_env=False, **kwargs)
