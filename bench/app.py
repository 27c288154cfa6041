# SPDX-License-Identifier: MPL-2.0
"""The local app behind every pair: an echo and a data source on one port, cheap enough to vanish.

The first byte of a connection picks the mode: ``E`` echoes everything back (request/response,
new connections, idle connections); ``D`` streams zeros as fast as the connection takes them
until the client closes (bulk throughput, counted by the client). Download rather than upload
keeps bulk independent of half-close support, so relays without it can still be measured.
Protocols with one reused receive buffer and one prebuilt 1 MiB chunk, so the app costs a few
microseconds per message and the proxies, not the app, set the pace.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from typing import cast

RECV_BUFFER = 1 << 16
CHUNK = bytes(1 << 20)


class AppProtocol(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self._view = memoryview(bytearray(RECV_BUFFER))
        self._mode = b""
        self._paused = False
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
            if self._mode == b"D":
                self._stream()
        if self._mode == b"E" and data:
            self._transport.write(bytes(data))

    def _stream(self) -> None:
        assert self._transport is not None
        # A closing transport drops writes without ever pausing: check it, or spin forever.
        while not self._paused and not self._transport.is_closing():
            self._transport.write(CHUNK)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._mode == b"D":
            self._stream()

    def eof_received(self) -> bool:
        assert self._transport is not None
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
