# SPDX-License-Identifier: MPL-2.0
"""CPU per GiB and per small message of the TLS record path alone, in one process.

A client and a server TLS object over memory BIOs: the client encrypts (what the outbound
proxy does), the server decrypts (the inbound proxy). No sockets, so the figure is the floor
a relay pays per byte in crypto plus Python calls, whatever the event loop. Compares
``ssl.SSLObject`` (OpenSSL 3.0) reading into fresh bytes or into a reused buffer, and
pyOpenSSL (OpenSSL 4.0) ``recv_into``; AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305; write
sizes from 16 KiB to 1 MiB. Usage: ``python -m bench.experiments.record_cost [--mib N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import ssl
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from OpenSSL import SSL

from bench.certs import BenchCerts, make_certs
from bench.experiments.handshake_cost import _pump

SUITES = {
    "AES128-GCM": "TLS_AES_128_GCM_SHA256",
    "AES256-GCM": "TLS_AES_256_GCM_SHA384",
    "CHACHA20": "TLS_CHACHA20_POLY1305_SHA256",
}


def stdlib_pair(
    certs: BenchCerts, suite: str
) -> tuple[ssl.SSLObject, ssl.SSLObject, list[ssl.MemoryBIO]]:
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for ctx, leaf in ((sctx, certs.server), (cctx, certs.client)):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_cert_chain(leaf.chain, leaf.key)
        ctx.load_verify_locations(certs.roots)
        ctx.options |= ssl.OP_NO_TICKET
    sctx.num_tickets = 0
    # The stdlib cannot pick TLS 1.3 suites; for ChaCha20 drop to TLS 1.2 with the ECDSA suite.
    if suite == "CHACHA20":
        for ctx in (sctx, cctx):
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305")
    elif suite == "AES128-GCM":
        for ctx in (sctx, cctx):
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    bios = [ssl.MemoryBIO() for _ in range(4)]
    client = cctx.wrap_bio(bios[0], bios[1], server_side=False)
    server = sctx.wrap_bio(bios[2], bios[3], server_side=True)
    for _ in range(10):
        for obj in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                obj.do_handshake()
        bios[2].write(bios[1].read())
        bios[0].write(bios[3].read())
    return client, server, bios


def pyossl_pair(certs: BenchCerts, suite: str) -> tuple[SSL.Connection, SSL.Connection]:
    conns = []
    for leaf in (certs.client, certs.server):
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
        ctx.set_tls13_ciphersuites(SUITES[suite].encode())
        ctx.use_certificate_chain_file(str(leaf.chain))
        ctx.use_privatekey_file(str(leaf.key))
        ctx.load_verify_locations(str(certs.roots))
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, None)
        ctx.set_options(SSL.OP_NO_TICKET)
        conns.append(SSL.Connection(ctx, None))
    client, server = conns
    client.set_connect_state()
    server.set_accept_state()
    for _ in range(10):
        for obj in (client, server):
            with contextlib.suppress(SSL.WantReadError):
                obj.do_handshake()
        _pump(client, server)
        _pump(server, client)
    return client, server


def stdlib_mover(certs: BenchCerts, suite: str, into_buffer: bool) -> Callable[[bytes], int]:
    client, server, bios = stdlib_pair(certs, suite)
    c_out, s_in = bios[1], bios[2]
    buf = bytearray(256 * 1024)

    def move(data: bytes) -> int:
        client.write(data)
        s_in.write(c_out.read())
        got = 0
        try:
            while True:
                n = server.read(len(buf), buf) if into_buffer else len(server.read(len(buf)))
                assert isinstance(n, int)
                if not n:
                    break
                got += n
        except ssl.SSLWantReadError:
            pass
        return got

    return move


def pyossl_mover(certs: BenchCerts, suite: str) -> Callable[[bytes], int]:
    client, server = pyossl_pair(certs, suite)
    buf = bytearray(256 * 1024)

    def move(data: bytes) -> int:
        client.sendall(data)
        _pump(client, server)
        got = 0
        with contextlib.suppress(SSL.WantReadError):
            while True:
                got += server.recv_into(buf)
        return got

    return move


def raw_mover(certs: BenchCerts, suite: str) -> Callable[[bytes], int]:
    """pyOpenSSL for set-up and handshake, then the data path through the raw cffi calls
    (`SSL_write`/`BIO_read`/`BIO_write`/`SSL_read`) into preallocated buffers."""
    from OpenSSL._util import ffi, lib

    client, server = pyossl_pair(certs, suite)
    c_ssl, c_out = client._ssl, client._from_ssl
    s_ssl, s_in = server._ssl, server._into_ssl
    wire = bytearray(2 << 20)
    wire_ptr = ffi.from_buffer(wire)
    plain = bytearray(256 * 1024)
    plain_ptr = ffi.from_buffer(plain)

    def move(data: bytes) -> int:
        src = ffi.from_buffer(data)
        sent = 0
        while sent < len(data):
            n = lib.SSL_write(c_ssl, src + sent, len(data) - sent)
            assert n > 0
            sent += n
        while (n := lib.BIO_read(c_out, wire_ptr, len(wire))) > 0:
            lib.BIO_write(s_in, wire_ptr, n)
        got = 0
        while (n := lib.SSL_read(s_ssl, plain_ptr, len(plain))) > 0:
            got += n
        return got

    return move


def cost(move: Callable[[bytes], int], size: int, total: int) -> float:
    """CPU seconds per GiB moved (encrypt + decrypt), or µs per message for small sizes."""
    data = bytes(size)
    count = max(1, total // size)
    move(data)
    t0 = time.process_time()
    for _ in range(count):
        assert move(data) == size
    spent = time.process_time() - t0
    return spent / (count * size) * (1 << 30) if size >= 4096 else spent / count * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=256, help="MiB moved per bulk cell")
    args = parser.parse_args(argv)
    sizes = [16 * 1024, 64 * 1024, 256 * 1024, 1024 * 1024]
    with tempfile.TemporaryDirectory() as tmp:
        certs = make_certs(Path(tmp))
        paths: list[tuple[str, Callable[[str], Callable[[bytes], int]]]] = [
            ("ssl read() -> bytes", lambda s: stdlib_mover(certs, s, False)),
            ("ssl read(n, buffer)", lambda s: stdlib_mover(certs, s, True)),
            ("pyOpenSSL recv_into", lambda s: pyossl_mover(certs, s)),
            ("OpenSSL 4.0 raw cffi calls", lambda s: raw_mover(certs, s)),
        ]
        head = " | ".join(f"{s // 1024} KiB s/GiB" for s in sizes)
        print(f"| path | suite | {head} | 64 B µs/msg |")
        print("| --- | --- |" + " ---: |" * (len(sizes) + 1))
        for label, factory in paths:
            for suite in SUITES:
                cells = [f"{cost(factory(suite), s, args.mib << 20):.2f}" for s in sizes]
                cells.append(f"{cost(factory(suite), 64, 20000):.1f}")
                print(f"| {label} | {suite} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
