"""The local app behind every pair: an echo and a sink on one port, cheap enough to vanish.

The first byte of a connection picks the mode: ``E`` echoes everything back (request/response,
new connections, idle connections); ``S`` swallows everything until the peer's EOF and then
answers with the byte count as 8 big-endian bytes (bulk throughput, checked end to end).
Protocols rather than streams, and one large reused receive buffer, so the app costs a few
microseconds per message and the proxies, not the app, set the pace.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from typing import cast

RECV_BUFFER = 1 << 20


class AppProtocol(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self._buf = bytearray(RECV_BUFFER)
        self._view = memoryview(self._buf)
        self._mode = b""
        self._count = 0
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        assert self._transport is not None
        data = self._view[:nbytes]
        if not self._mode:
            self._mode = bytes(data[:1])
            data = data[1:]
        if self._mode == b"E":
            if data:
                self._transport.write(bytes(data))
        else:
            self._count += len(data)

    def eof_received(self) -> bool:
        assert self._transport is not None
        if self._mode == b"S":
            self._transport.write(self._count.to_bytes(8, "big"))
        self._transport.close()
        return False


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(AppProtocol, host, port, backlog=4096, reuse_address=True)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    import uvloop

    try:
        uvloop.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
