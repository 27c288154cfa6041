# SPDX-License-Identifier: MPL-2.0
"""CPU per round trip through meshkit's four legs in one process, over real loopback sockets.

The proxy's own `legs.Leg`/`legs.TLSLeg` on the event loop the proxy uses (uvloop when
installed): a driver writes a message to a plain leg (the outbound proxy's local socket), which
is spliced to a client TLS leg; that one talks TLS to a server TLS leg (the inbound proxy's
public socket), spliced to a plain leg connected to an echo. One round trip is the four hops
each way, plus the driver's and the echo's own callbacks (the same for every variant). No
config, metrics or authorization: the per-hop code only, so A/B changes to it show clearly.

To compare two checkouts, run it under each with `PYTHONPATH=<checkout>/proxy`; the read mode
is the proxy's (`MESHKIT_READ_MODE=copy`). Usage:
``python -m bench.experiments.hop_cost [--count N] [--repeat R] [--size B] [--engine E]``.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.certs import make_certs
from meshkit import legs
from meshkit.legs import Leg, TLSLeg, splice


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Two ends of one loopback TCP connection (the proxy's sockets are TCP, not AF_UNIX)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        a = socket.create_connection(listener.getsockname())
        b, _ = listener.accept()
    for s in (a, b):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
    return a, b


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class _Driver(asyncio.Protocol):
    """Sends one message, waits for all of it back, sends the next: `left` round trips."""

    def __init__(self, message: bytes) -> None:
        self.message = message
        self.got = 0
        self.left = 0
        self.done: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def start(self, count: int) -> asyncio.Future[None]:
        self.left = count
        self.got = 0
        self.done = asyncio.get_running_loop().create_future()
        self.transport.write(self.message)
        return self.done

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        if self.got < len(self.message):
            return
        self.got = 0
        self.left -= 1
        if self.left > 0:
            self.transport.write(self.message)
        elif self.done is not None and not self.done.done():
            self.done.set_result(None)


def _sides(engine: str) -> tuple[Any, Any]:
    from meshkit.openssl_engine import openssl_sides
    from meshkit.tls import stdlib_sides

    make: Any = openssl_sides if engine == "openssl" else stdlib_sides
    with tempfile.TemporaryDirectory() as tmp:
        c = make_certs(Path(tmp))
        roots = (c.roots.read_text(),)
        server, _ = make(c.server.chain.read_text(), c.server.key.read_text(), roots)
        _, client = make(c.client.chain.read_text(), c.client.key.read_text(), roots)
    return server, client


async def _chain(engine: str, size: int) -> tuple[_Driver, list[socket.socket]]:
    loop = asyncio.get_running_loop()
    server_side, client_side = _sides(engine)
    local, outer, app = _tcp_pair(), _tcp_pair(), _tcp_pair()
    driver = _Driver(bytes(size))
    plain_out, plain_in = Leg(), Leg()
    joined: list[asyncio.Future[None]] = [loop.create_future(), loop.create_future()]

    def on_client(leg: TLSLeg, exc: BaseException | None) -> None:
        if exc is not None:
            raise exc
        splice(plain_out, leg)
        joined[0].set_result(None)

    def on_server(leg: TLSLeg, exc: BaseException | None) -> None:
        if exc is not None:
            raise exc
        splice(leg, plain_in)
        joined[1].set_result(None)

    await loop.connect_accepted_socket(lambda: driver, local[0])
    await loop.connect_accepted_socket(lambda: plain_out, local[1])
    await loop.connect_accepted_socket(lambda: plain_in, app[0])
    await loop.connect_accepted_socket(_Echo, app[1])
    await loop.connect_accepted_socket(lambda: TLSLeg(server_side, on_server), outer[1])
    await loop.connect_accepted_socket(lambda: TLSLeg(client_side, on_client), outer[0])
    await asyncio.wait_for(asyncio.gather(*joined), 10)
    return driver, [*local, *outer, *app]


async def _measure(args: argparse.Namespace) -> None:
    driver, socks = await _chain(args.engine, args.size)
    await asyncio.wait_for(driver.start(min(args.count, 2000)), 60)  # warm up
    cpu: list[float] = []
    user: list[float] = []
    wall: list[float] = []
    for _ in range(args.repeat):
        t0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        await asyncio.wait_for(driver.start(args.count), 600)
        t1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu.append((t1.ru_utime + t1.ru_stime - t0.ru_utime - t0.ru_stime) / args.count * 1e6)
        user.append((t1.ru_utime - t0.ru_utime) / args.count * 1e6)
        wall.append((time.perf_counter() - w0) / args.count * 1e6)
    driver.transport.close()
    for s in socks:
        s.close()
    print(
        f"engine={args.engine} read_mode={legs.READ_MODE} size={args.size} "
        f"loop={type(asyncio.get_running_loop()).__module__}: CPU µs per round trip "
        f"median {statistics.median(cpu):.2f} min {min(cpu):.2f} "
        f"(runs {', '.join(f'{v:.2f}' for v in cpu)}); "
        f"user (interpreter, OpenSSL, loop) µs min {min(user):.2f} median "
        f"{statistics.median(user):.2f}; wall µs median {statistics.median(wall):.2f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--engine", choices=("openssl", "stdlib"), default="openssl")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args(argv)
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(_measure(args))
    else:
        asyncio.run(_measure(args))


if __name__ == "__main__":
    main()
