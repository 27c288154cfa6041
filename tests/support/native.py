# SPDX-License-Identifier: MPL-2.0
"""Helpers for the native tests: a recording echo handler and an event-loop runner.

Everything the tests use is real: the dev agent process, meshkit-proxy processes, TLS, sockets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from meshkit.flags import HTTPFlags
from meshkit.native import Service, peer_of

T = TypeVar("T")


def run(coro_fn: Callable[[], Awaitable[T]], timeout: float = 90.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro_fn(), timeout)

    return asyncio.run(bounded())


def service(name: str, address: str, **kw: Any) -> Service:
    return Service(name, consul=HTTPFlags(http_addr=address), env={}, **kw)


@dataclass
class Recorder:
    """A stream handler that records every byte and peer it sees, then echoes with a prefix."""

    name: str
    received: bytearray = field(default_factory=bytearray)
    peers: list[str] = field(default_factory=list)
    calls: int = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.calls += 1
        self.peers.append(peer_of(writer).service.service)
        try:
            while data := await reader.read(65536):
                self.received += data
                writer.write(self.name.encode() + b":" + data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


async def roundtrip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes
) -> bytes:
    """Send `payload`, read until the echo of its tail arrives or the peer closes (5 s max)."""
    writer.write(payload)
    got = b""
    try:
        await writer.drain()
        async with asyncio.timeout(5):
            while not got.endswith(payload[-4:]):
                chunk = await reader.read(65536)
                if not chunk:
                    break
                got += chunk
    except (ConnectionError, OSError, TimeoutError):
        pass
    finally:
        writer.close()
    return got


def register_native(agent: Any, name: str, port: int, sid: str | None = None) -> None:
    agent.register(
        {
            "Name": name,
            "ID": sid or name,
            "Port": port,
            "Address": "127.0.0.1",
            "Connect": {"Native": True},
        }
    )


def intention(agent: Any, src: str, dst: str, action: str) -> None:
    """Create or replace the exact intention src -> dst."""
    agent.ok(
        "PUT",
        f"/v1/connect/intentions/exact?source={src}&destination={dst}",
        {"SourceName": src, "DestinationName": dst, "Action": action},
    )
