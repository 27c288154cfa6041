# SPDX-License-Identifier: MPL-2.0
"""The client load, run as separate processes so the orchestrator never competes with it.

Each invocation waits for a shared start time, runs one mode for a fixed time and prints one
JSON object on stdout. Bulk uses blocking sockets in threads (``recv_into`` a 1 MiB buffer
releases the GIL, so the kernel copy is nearly all the client does); request/response and new
connections use uvloop protocols; several processes can be started in parallel and merged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, cast

HOST = "127.0.0.1"
CHUNK = 1 << 20
OP_TIMEOUT = 10.0


def _wait_until(start: float) -> None:
    delay = start - time.time()
    if delay > 0:
        time.sleep(delay)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=OP_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


@dataclass
class BulkStream:
    received: int = 0
    seconds: float = 0.0
    error: str = ""


def _bulk_one(port: int, seconds: float, result: BulkStream, go: threading.Barrier) -> None:
    buf = memoryview(bytearray(CHUNK))
    try:
        sock = _connect(port)
        go.wait(OP_TIMEOUT)
        began = time.perf_counter()
        deadline = began + seconds
        sock.sendall(b"D")
        while time.perf_counter() < deadline:
            n = sock.recv_into(buf)
            if n == 0:
                raise ConnectionError("closed by the pair before the end")
            result.received += n
        result.seconds = time.perf_counter() - began
        sock.close()
    except (OSError, threading.BrokenBarrierError) as exc:
        result.error = repr(exc)


def run_bulk(port: int, conns: int, seconds: float, start: float) -> dict[str, Any]:
    """Download for `seconds` on `conns` connections; only bytes that arrived count."""
    results = [BulkStream() for _ in range(conns)]
    go = threading.Barrier(conns)
    _wait_until(start)
    threads = [
        threading.Thread(target=_bulk_one, args=(port, seconds, r, go), daemon=True)
        for r in results
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    errors = [r.error for r in results if r.error]
    total = sum(r.received for r in results)
    elapsed = max((r.seconds for r in results), default=0.0)
    return {"bytes": total, "seconds": elapsed, "errors": errors}


def run_rr_single(port: int, seconds: float, size: int, start: float) -> dict[str, Any]:
    """One connection, one 64-byte message in flight: the latency a request pays."""
    msg = bytes(size)
    lat: list[float] = []
    errors: list[str] = []
    try:
        sock = _connect(port)
        sock.sendall(b"E" + msg)  # the first exchange pays for the handshake: not timed
        buf = bytearray(size)
        view = memoryview(buf)
        sock.recv_into(view, size, socket.MSG_WAITALL)
        _wait_until(start)
        deadline = time.perf_counter() + seconds
        while True:
            t0 = time.perf_counter_ns()
            if t0 / 1e9 > deadline:
                break
            sock.sendall(msg)
            got = 0
            while got < size:
                n = sock.recv_into(view[got:])
                if n == 0:
                    raise ConnectionError("closed by peer")
                got += n
            lat.append((time.perf_counter_ns() - t0) / 1000)
        sock.close()
    except OSError as exc:
        errors.append(repr(exc))
    return {"requests": len(lat), "seconds": seconds, "latency_us": lat, "errors": errors}


class _PingPong(asyncio.Protocol):
    """One connection of the concurrent request/response load: next request on each answer."""

    def __init__(self, run: _RRRun) -> None:
        self.run = run
        self.pending = 0
        self.sent_at = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport.write(b"E")

    def fire(self) -> None:
        assert self.transport is not None
        self.pending = self.run.size
        self.sent_at = time.perf_counter_ns()
        self.transport.write(self.run.msg)

    def data_received(self, data: bytes) -> None:
        self.pending -= len(data)
        if self.pending > 0:
            return
        run = self.run
        if run.priming:
            run.unprimed -= 1
            if run.unprimed == 0:
                run.primed.set()
            return
        if run.measuring:
            run.lat.append((time.perf_counter_ns() - self.sent_at) / 1000)
        if run.running:
            self.fire()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.run.running:
            self.run.errors.append(f"connection lost: {exc!r}")


@dataclass
class _RRRun:
    size: int
    msg: bytes
    running: bool = True
    measuring: bool = False
    priming: bool = True
    unprimed: int = 0
    primed: asyncio.Event = field(default_factory=asyncio.Event)
    lat: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def _rr_many(
    port: int, conns: int, seconds: float, size: int, start: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    run = _RRRun(size=size, msg=bytes(size))
    protos: list[_PingPong] = []
    for _ in range(conns):
        _, proto = await asyncio.wait_for(
            loop.create_connection(lambda: _PingPong(run), HOST, port), OP_TIMEOUT
        )
        protos.append(proto)
    # One exchange per connection first, so every mTLS handshake is over before timing starts.
    run.unprimed = len(protos)
    for p in protos:
        p.fire()
    await asyncio.wait_for(run.primed.wait(), 60)
    run.priming = False
    await asyncio.sleep(max(0.0, start - time.time()))
    for p in protos:
        p.fire()
    await asyncio.sleep(0.2)  # warm-up: every connection has a request in flight
    run.measuring = True
    began = time.perf_counter()
    await asyncio.sleep(seconds)
    run.measuring = False
    elapsed = time.perf_counter() - began
    run.running = False
    for p in protos:
        assert p.transport is not None
        p.transport.close()
    return {
        "requests": len(run.lat),
        "seconds": elapsed,
        "latency_us": run.lat,
        "errors": run.errors,
    }


async def _conns(
    port: int, workers: int, seconds: float, size: int, start: float
) -> dict[str, Any]:
    msg = b"E" + bytes(size)
    done = 0
    lat: list[float] = []
    errors: list[str] = []
    await asyncio.sleep(max(0.0, start - time.time()))
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline and len(errors) < 100:
            t0 = time.perf_counter_ns()
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(HOST, port), OP_TIMEOUT
                )
                writer.write(msg)
                await asyncio.wait_for(reader.readexactly(size), OP_TIMEOUT)
                writer.close()
                await writer.wait_closed()
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                errors.append(repr(exc))
                continue
            done += 1
            lat.append((time.perf_counter_ns() - t0) / 1000)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed = time.perf_counter() - began
    return {
        "connections": done,
        "seconds": elapsed,
        "latency_us": lat,
        "errors": errors[:5],
        "error_count": len(errors),
    }


async def _idle(port: int, count: int, hold: float) -> dict[str, Any]:
    """Open `count` connections through the pair, each proven end to end, then hold them."""
    sem = asyncio.Semaphore(32)
    held: list[asyncio.StreamWriter] = []
    errors: list[str] = []

    async def one() -> None:
        async with sem:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(HOST, port), OP_TIMEOUT
                )
                writer.write(b"Ex")
                await asyncio.wait_for(reader.readexactly(1), OP_TIMEOUT)
                held.append(writer)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                errors.append(repr(exc))

    await asyncio.gather(*(one() for _ in range(count)))
    print(
        json.dumps({"open": len(held), "errors": errors[:5], "error_count": len(errors)}),
        flush=True,
    )
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stdin_closed, hold)
    for w in held:
        w.close()
    return {}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["bulk", "rr", "conns", "idle"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--conns", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--start", type=float, default=0.0, help="epoch time to begin at")
    parser.add_argument("--out", help="write the JSON result here instead of stdout")
    args = parser.parse_args(argv)
    import uvloop

    if args.mode == "bulk":
        out = run_bulk(args.port, args.conns, args.seconds, args.start)
    elif args.mode == "rr" and args.conns == 1:
        out = run_rr_single(args.port, args.seconds, args.size, args.start)
    elif args.mode == "rr":
        out = uvloop.run(_rr_many(args.port, args.conns, args.seconds, args.size, args.start))
    elif args.mode == "conns":
        out = uvloop.run(_conns(args.port, args.conns, args.seconds, args.size, args.start))
    else:
        uvloop.run(_idle(args.port, args.conns, args.seconds))
        return
    text = json.dumps(out)
    if args.out:
        # A file, not the stdout pipe: results run to megabytes, and a pipe left non-blocking
        # by an event loop once truncated them at 64 KiB.
        tmp = f"{args.out}.tmp"
        with open(tmp, "w") as fh:
            fh.write(text)
        os.replace(tmp, args.out)
    else:
        print(text, flush=True)


if __name__ == "__main__":
    main()
