# SPDX-License-Identifier: MPL-2.0
"""A protocol wrapper that authorizes a TLS peer before the real protocol exists.

Web stacks built on `loop.create_server` (aiohttp, uvicorn, hypercorn) hand every connection to
a protocol factory. `GuardedProtocol` stands in front of it: on `connection_made` it stops
reading, checks the peer (identity, trust domain, intentions), and only then creates the
application's protocol and passes it the transport. A refused peer is aborted; the
application's protocol is never created, so it cannot see a byte.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from meshkit.native.errors import Denied

# The service's identity-and-intention check of a handshaken peer (Service.check_peer): raises
# Denied for a peer that may not connect.
PeerCheck = Callable[[Any], Awaitable[object]]

log = logging.getLogger("meshkit.native.guard")

# Bytes a peer may send before it is authorized (it should send none while reading is paused;
# this bounds what a protocol quirk could make us hold).
MAX_EARLY_BYTES = 64 * 1024


class GuardedProtocol(asyncio.Protocol):
    def __init__(self, check_peer: PeerCheck, factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self.check_peer, self.factory = check_peer, factory
        self.inner: Any = None
        self.transport: asyncio.Transport | None = None
        self.early: list[bytes] = []
        self.early_size = 0
        self.early_eof = False
        self.closed = False
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.pause_reading()
        self.task = asyncio.get_running_loop().create_task(self._authorize())

    async def _authorize(self) -> None:
        transport = self.transport
        assert transport is not None
        try:
            await self.check_peer(transport.get_extra_info("ssl_object"))
        except Denied as exc:
            log.info("%s", exc)
            transport.abort()
            return
        except Exception as exc:  # fail closed on anything unexpected
            log.error("authorizing a peer failed, refusing it: %s", exc)
            transport.abort()
            return
        if self.closed:
            return
        self.inner = self.factory()
        self.inner.connection_made(transport)
        for chunk in self.early:
            self.inner.data_received(chunk)
        self.early.clear()
        if self.early_eof:
            self.inner.eof_received()
        transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)
            return
        self.early_size += len(data)
        if self.early_size > MAX_EARLY_BYTES and self.transport is not None:
            self.transport.abort()
            return
        self.early.append(data)

    def eof_received(self) -> bool | None:
        if self.inner is not None:
            return bool(self.inner.eof_received())
        self.early_eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.inner is not None:
            self.inner.connection_lost(exc)
        elif self.task is not None:
            self.task.cancel()

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()
