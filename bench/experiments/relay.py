# SPDX-License-Identifier: MPL-2.0
"""A minimal TLS-terminating TCP relay in several data-path styles, to measure their raw cost.

Not the proxy: no config, no authorization beyond reading the peer's URI SAN, no metrics. One
process is one side of a pair: ``out`` accepts plain TCP and dials the other side over mTLS;
``in`` accepts mTLS and dials the app in plain TCP. Styles:

- ``streams``: asyncio streams + ``ssl`` (the naive baseline: read(n) / write / drain);
- ``proto``: ``BufferedProtocol`` on both sides, the loop's own SSL transport (``ssl``);
- ``pyossl``: plain TCP transports, TLS done by pyOpenSSL (OpenSSL 4.0) over memory BIOs;
- ``raw``: as ``pyossl`` for the handshake, then records through the raw cffi calls.

``--loop`` picks asyncio or uvloop; ``--workers N`` forks N processes sharing the port with
SO_REUSEPORT. Usage: ``python -m bench.experiments.relay out --listen P --connect Q ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import ssl
import sys
from dataclasses import dataclass
from typing import Any, cast

from cryptography import x509
from OpenSSL import SSL
from OpenSSL._util import ffi, lib

HOST = "127.0.0.1"
AES = "TLS_AES_128_GCM_SHA256"
CHACHA = "TLS_CHACHA20_POLY1305_SHA256"


@dataclass(frozen=True)
class Options:
    role: str
    listen: int
    connect: int
    chain: str
    key: str
    roots: str
    style: str
    loop: str
    buf: int
    tls: str
    cipher: str
    workers: int


def stdlib_context(o: Options, server: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(o.chain, o.key)
    ctx.load_verify_locations(o.roots)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if o.tls == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(
            "ECDHE-ECDSA-CHACHA20-POLY1305"
            if o.cipher == "chacha"
            else "ECDHE-ECDSA-AES128-GCM-SHA256"
        )
    ctx.options |= ssl.OP_NO_TICKET
    if server:
        ctx.num_tickets = 0
    return ctx


def pyossl_context(o: Options) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    if o.tls == "1.2":
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_cipher_list(
            b"ECDHE-ECDSA-CHACHA20-POLY1305"
            if o.cipher == "chacha"
            else b"ECDHE-ECDSA-AES128-GCM-SHA256"
        )
    else:
        ctx.set_tls13_ciphersuites((CHACHA if o.cipher == "chacha" else AES).encode())
    ctx.use_certificate_chain_file(o.chain)
    ctx.use_privatekey_file(o.key)
    ctx.load_verify_locations(o.roots)
    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, None)
    ctx.set_options(SSL.OP_NO_TICKET)
    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
    return ctx


_TASKS: set[asyncio.Task[None]] = set()


def _spawn(coro: Any) -> None:
    """Keep a reference to a fire-and-forget task so it is not collected mid-flight."""
    task = asyncio.get_running_loop().create_task(coro)
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


def stdlib_uri(peercert: dict[str, Any] | None) -> str:
    sans = cast(tuple[tuple[str, str], ...], (peercert or {}).get("subjectAltName", ()))
    return next((v for k, v in sans if k == "URI"), "")


# --- streams ---------------------------------------------------------------------------------


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    try:
        while data := await reader.read(n):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        pass
    finally:
        if not writer.can_write_eof():
            writer.close()


async def streams_main(o: Options, sock: socket.socket) -> None:
    server_ctx = stdlib_context(o, True) if o.role == "in" else None
    client_ctx = stdlib_context(o, False) if o.role == "out" else None

    async def handle(r1: asyncio.StreamReader, w1: asyncio.StreamWriter) -> None:
        if o.role == "in" and not stdlib_uri(w1.get_extra_info("peercert")):
            w1.close()
            return
        try:
            r2, w2 = await asyncio.open_connection(
                HOST,
                o.connect,
                ssl=client_ctx,
                server_hostname="" if client_ctx else None,
                limit=o.buf,
            )
        except OSError:
            w1.close()
            return
        if o.role == "out" and not stdlib_uri(w2.get_extra_info("peercert")):
            w1.close()
            w2.close()
            return
        await asyncio.gather(_copy(r1, w2, o.buf), _copy(r2, w1, o.buf))
        w1.close()
        w2.close()

    server = await asyncio.start_server(
        handle, sock=sock, ssl=server_ctx, limit=o.buf, backlog=4096
    )
    async with server:
        await server.serve_forever()


# --- protocols on both sides (the loop's SSL transport, or plain transports) ----------------


class Half(asyncio.BufferedProtocol):
    """One socket of a relayed connection; bytes read here are written to `peer`."""

    def __init__(self, buf: int) -> None:
        self.view = memoryview(bytearray(buf))
        self.transport: asyncio.Transport | None = None
        self.peer: Sink | None = None
        self.early: list[bytes] = []
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        data = bytes(self.view[:nbytes])
        if self.peer is None:
            self.early.append(data)
        else:
            self.peer.send(data)

    def link(self, peer: Sink) -> None:
        self.peer = peer
        for data in self.early:
            peer.send(data)
        self.early.clear()

    # Sink side: what the peer sends to us.
    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def send_eof(self) -> None:
        assert self.transport is not None
        if self.transport.can_write_eof():
            self.transport.write_eof()
        else:
            self.transport.close()

    def pause_source(self) -> None:
        assert self.transport is not None
        self.transport.pause_reading()

    def resume_source(self) -> None:
        assert self.transport is not None
        self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # Flow control: when our socket is full, stop reading the peer's.
    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.pause_source()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.resume_source()

    def eof_received(self) -> bool:
        if self.peer is not None:
            self.peer.send_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.peer is not None:
            self.peer.close()


Sink = Any  # Half or TLSHalf: send, send_eof, pause_source, resume_source, close


class TLSHalf(asyncio.Protocol):
    """A socket whose bytes are TLS records, decrypted by pyOpenSSL over memory BIOs."""

    def __init__(self, o: Options, ctx: SSL.Context, server: bool, on_ready: Any) -> None:
        self.conn = SSL.Connection(ctx, None)
        if server:
            self.conn.set_accept_state()
        else:
            self.conn.set_connect_state()
        self.buf = bytearray(o.buf)
        self.view = memoryview(self.buf)
        self.out_size = o.buf + (o.buf >> 4) + 4096
        self.ready = False
        self.on_ready = on_ready
        self.transport: asyncio.Transport | None = None
        self.peer: Sink | None = None
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._handshake()

    def _flush(self) -> None:
        assert self.transport is not None
        while True:
            try:
                out = self.conn.bio_read(self.out_size)
            except SSL.WantReadError:
                return
            self.transport.write(out)

    def _handshake(self) -> None:
        try:
            self.conn.do_handshake()
        except SSL.WantReadError:
            self._flush()
            return
        except SSL.Error:
            self._flush()
            self.close()
            return
        self._flush()
        self.ready = True
        cert = self.conn.get_peer_certificate(as_cryptography=True)
        uri = ""
        if cert is not None:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            uri = str(san.value.get_values_for_type(x509.UniformResourceIdentifier)[0])
        self.on_ready(self, uri)

    def data_received(self, data: bytes) -> None:
        self.conn.bio_write(data)
        if not self.ready:
            self._handshake()
            if not self.ready:
                return
        self._read_plain()

    def _read_plain(self) -> None:
        while True:
            try:
                n = self.conn.recv_into(self.buf)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                if self.peer is not None:
                    self.peer.send_eof()
                break
            except SSL.Error:
                self.close()
                return
            data = bytes(self.view[:n])
            if self.peer is None:
                self.early.append(data)
            else:
                self.peer.send(data)
        self._flush()

    def link(self, peer: Sink) -> None:
        self.peer = peer
        for data in self.early:
            peer.send(data)
        self.early.clear()

    def send(self, data: bytes) -> None:
        self.conn.sendall(data)
        self._flush()

    def send_eof(self) -> None:
        with contextlib.suppress(SSL.Error):
            self.conn.shutdown()
        self._flush()

    def pause_source(self) -> None:
        assert self.transport is not None
        self.transport.pause_reading()

    def resume_source(self) -> None:
        assert self.transport is not None
        self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.pause_source()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.resume_source()

    def eof_received(self) -> bool:
        if self.peer is not None:
            self.peer.send_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None:
            self.peer.close()


class RawTLSHalf(TLSHalf):
    """Handshake through pyOpenSSL, then records through the raw cffi calls of the same
    OpenSSL 4.0 (`SSL_read`/`SSL_write`/`BIO_*`) into preallocated buffers: no per-call
    allocation, no pyOpenSSL wrapper checks."""

    def __init__(self, o: Options, ctx: SSL.Context, server: bool, on_ready: Any) -> None:
        super().__init__(o, ctx, server, on_ready)
        self.ssl = self.conn._ssl
        self.into = self.conn._into_ssl
        self.from_ = self.conn._from_ssl
        self.plain_ptr = ffi.from_buffer(self.buf)
        self.wire = bytearray(self.out_size)
        self.wire_view = memoryview(self.wire)
        self.wire_ptr = ffi.from_buffer(self.wire)

    def _flush(self) -> None:
        assert self.transport is not None
        while (n := lib.BIO_read(self.from_, self.wire_ptr, len(self.wire))) > 0:
            self.transport.write(bytes(self.wire_view[:n]))

    def data_received(self, data: bytes) -> None:
        if not self.ready:
            super().data_received(data)
            return
        lib.BIO_write(self.into, data, len(data))
        self._read_plain()

    def _read_plain(self) -> None:
        size = len(self.buf)
        got = 0
        eof = False
        while got < size:
            n = lib.SSL_read(self.ssl, self.plain_ptr + got, size - got)
            if n > 0:
                got += n
                continue
            err = lib.SSL_get_error(self.ssl, n)
            if err == lib.SSL_ERROR_ZERO_RETURN:
                eof = True
            elif err != lib.SSL_ERROR_WANT_READ:
                self.close()
                return
            break
        if got:
            data = bytes(self.view[:got])
            if self.peer is None:
                self.early.append(data)
            else:
                self.peer.send(data)
        if eof and self.peer is not None:
            self.peer.send_eof()
        self._flush()
        if got == size:
            self._read_plain()  # more records may be waiting in the BIO

    def send(self, data: bytes) -> None:
        sent = 0
        src = ffi.from_buffer(data)
        while sent < len(data):
            n = lib.SSL_write(self.ssl, src + sent, len(data) - sent)
            if n <= 0:
                self.close()
                return
            sent += n
        self._flush()


async def proto_main(o: Options, sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    pyossl = o.style in ("pyossl", "raw")
    tls_half: Any = RawTLSHalf if o.style == "raw" else TLSHalf
    ossl_ctx = pyossl_context(o) if pyossl else None
    std_server = stdlib_context(o, True) if (o.role == "in" and not pyossl) else None
    std_client = stdlib_context(o, False) if (o.role == "out" and not pyossl) else None

    async def dial_plain(accepted: Sink) -> None:
        try:
            _, app = await loop.create_connection(lambda: Half(o.buf), HOST, o.connect)
        except OSError:
            accepted.close()
            return
        accepted.link(app)
        app.link(accepted)

    async def dial_tls(accepted: Half) -> None:
        if pyossl:
            assert ossl_ctx is not None
            done: asyncio.Future[tuple[TLSHalf, str]] = loop.create_future()

            def ready(half: TLSHalf, uri: str) -> None:
                if not done.done():
                    done.set_result((half, uri))

            try:
                await loop.create_connection(
                    lambda: tls_half(o, ossl_ctx, False, ready), HOST, o.connect
                )
                up, uri = await asyncio.wait_for(done, 10)
            except (OSError, TimeoutError):
                accepted.close()
                return
        else:
            try:
                tr, up_half = await loop.create_connection(
                    lambda: Half(o.buf), HOST, o.connect, ssl=std_client, server_hostname=""
                )
            except (OSError, ssl.SSLError):
                accepted.close()
                return
            up = up_half  # type: ignore[assignment]
            uri = stdlib_uri(tr.get_extra_info("peercert"))
        if not uri:
            accepted.close()
            up.close()
            return
        accepted.link(up)
        up.link(accepted)

    def accepted_plain() -> Half:
        half = Half(o.buf)
        orig = half.connection_made

        def made(transport: asyncio.BaseTransport) -> None:
            orig(transport)
            _spawn(dial_tls(half))

        half.connection_made = made  # type: ignore[method-assign]
        return half

    def accepted_tls_std() -> Half:
        half = Half(o.buf)
        orig = half.connection_made

        def made(transport: asyncio.BaseTransport) -> None:
            orig(transport)
            if not stdlib_uri(transport.get_extra_info("peercert")):
                transport.close()
                return
            _spawn(dial_plain(half))

        half.connection_made = made  # type: ignore[method-assign]
        return half

    def accepted_tls_ossl() -> TLSHalf:
        assert ossl_ctx is not None

        def ready(half: TLSHalf, uri: str) -> None:
            if not uri:
                half.close()
                return
            _spawn(dial_plain(half))

        return cast(TLSHalf, tls_half(o, ossl_ctx, True, ready))

    if o.role == "out":
        factory: Any = accepted_plain
        server = await loop.create_server(factory, sock=sock, backlog=4096)
    elif pyossl:
        server = await loop.create_server(accepted_tls_ossl, sock=sock, backlog=4096)
    else:
        server = await loop.create_server(accepted_tls_std, sock=sock, ssl=std_server, backlog=4096)
    async with server:
        await server.serve_forever()


def listening_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((HOST, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def serve(o: Options) -> None:
    sock = listening_socket(o.listen)  # each worker its own socket: the kernel spreads accepts
    coro = streams_main(o, sock) if o.style == "streams" else proto_main(o, sock)
    if o.loop == "uvloop":
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("role", choices=["out", "in"])
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--connect", type=int, required=True)
    p.add_argument("--chain", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--roots", required=True)
    p.add_argument("--style", choices=["streams", "proto", "pyossl", "raw"], default="proto")
    p.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    p.add_argument("--buf", type=int, default=256 * 1024)
    p.add_argument("--tls", choices=["1.2", "1.3"], default="1.3")
    p.add_argument("--cipher", choices=["aesgcm", "chacha"], default="aesgcm")
    p.add_argument("--workers", type=int, default=1)
    o = Options(**vars(p.parse_args(argv)))
    children = []
    for _ in range(o.workers - 1):
        pid = os.fork()
        if pid == 0:
            serve(o)
            os._exit(0)
        children.append(pid)
    try:
        serve(o)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
