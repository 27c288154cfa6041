# SPDX-License-Identifier: MPL-2.0
"""CPU per mutual TLS handshake, both ends in one process over memory BIOs (no sockets).

Compares Python's ``ssl`` (Debian's OpenSSL 3.0) with pyOpenSSL (the OpenSSL 4.0 inside the
``cryptography`` wheel), TLS 1.3 and 1.2, with and without TLS 1.3 session tickets, using the
benchmark's Consul-shaped P-256 leaves. Each handshake includes reading the peer's URI SAN,
as the proxy must. Usage: ``python -m bench.experiments.handshake_cost [--count N]``.
"""

from __future__ import annotations

import argparse
import ssl
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

from bench.certs import BenchCerts, LeafFiles, make_certs


def _stdlib_ctx(
    leaf: LeafFiles, roots: Path, server: bool, tls: str, tickets: bool
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(leaf.chain, leaf.key)
    ctx.load_verify_locations(roots)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
        if server:
            ctx.num_tickets = 0
    return ctx


def stdlib_pair(certs: BenchCerts, tls: str, tickets: bool) -> Callable[[], str]:
    sctx = _stdlib_ctx(certs.server, certs.roots, True, tls, tickets)
    cctx = _stdlib_ctx(certs.client, certs.roots, False, tls, tickets)

    def once() -> str:
        c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
        client = cctx.wrap_bio(c_in, c_out, server_side=False)
        server = sctx.wrap_bio(s_in, s_out, server_side=True)
        done_c = done_s = False
        for _ in range(20):
            if not done_c:
                try:
                    client.do_handshake()
                    done_c = True
                except ssl.SSLWantReadError:
                    pass
            s_in.write(c_out.read())
            if not done_s:
                try:
                    server.do_handshake()
                    done_s = True
                except ssl.SSLWantReadError:
                    pass
            c_in.write(s_out.read())
            if done_c and done_s:
                break
        peer = server.getpeercert() or {}
        sans = cast(tuple[tuple[str, str], ...], peer.get("subjectAltName", ()))
        uri = next(v for k, v in sans if k == "URI")
        assert client.getpeercert()
        return f"{uri[-7:]} {client.version()} {client.cipher()[0]}"  # type: ignore[index]

    return once


def _pyopenssl_ctx(
    leaf: LeafFiles, roots: Path, tls: str, tickets: bool, p256: bool = False
) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    if tls == "1.2":
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    ctx.use_certificate_chain_file(str(leaf.chain))
    ctx.use_privatekey_file(str(leaf.key))
    ctx.load_verify_locations(str(roots))
    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, None)
    if not tickets:
        ctx.set_options(SSL.OP_NO_TICKET)
    if p256:
        # The only group pyOpenSSL can pin: skips the default hybrid X25519MLKEM768 key share.
        ctx.set_tmp_ecdh(ec.SECP256R1())
    return ctx


def _san_uri(conn: SSL.Connection) -> str:
    cert = conn.get_peer_certificate(as_cryptography=True)
    assert cert is not None
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return str(san.value.get_values_for_type(x509.UniformResourceIdentifier)[0])


def pyopenssl_pair(
    certs: BenchCerts, tls: str, tickets: bool, p256: bool = False
) -> Callable[[], str]:
    sctx = _pyopenssl_ctx(certs.server, certs.roots, tls, tickets, p256)
    cctx = _pyopenssl_ctx(certs.client, certs.roots, tls, tickets, p256)

    def once() -> str:
        client = SSL.Connection(cctx, None)
        server = SSL.Connection(sctx, None)
        client.set_connect_state()
        server.set_accept_state()
        done_c = done_s = False
        for _ in range(20):
            if not done_c:
                try:
                    client.do_handshake()
                    done_c = True
                except SSL.WantReadError:
                    pass
            _pump(client, server)
            if not done_s:
                try:
                    server.do_handshake()
                    done_s = True
                except SSL.WantReadError:
                    pass
            _pump(server, client)
            if done_c and done_s:
                break
        uri = _san_uri(server)
        _san_uri(client)
        group = client.get_group_name() or "?"
        return f"{uri[-7:]} {client.get_protocol_version_name()} {client.get_cipher_name()} {group}"

    return once


def _pump(src: SSL.Connection, dst: SSL.Connection) -> None:
    while True:
        try:
            data = src.bio_read(65536)
        except SSL.WantReadError:
            return
        if not data:
            return
        dst.bio_write(data)


def measure(once: Callable[[], str], count: int) -> tuple[float, str]:
    """CPU microseconds per mutual handshake (client + server), and what was negotiated."""
    what = once()
    for _ in range(5):
        once()
    t0 = time.process_time()
    for _ in range(count):
        once()
    return (time.process_time() - t0) / count * 1e6, what


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        certs = make_certs(Path(tmp))
        print(f"{'library':<28} {'TLS':>4} {'tickets':>8} {'µs CPU/handshake':>17}  negotiated")
        for name, factory, lib in (
            ("ssl", stdlib_pair, ssl.OPENSSL_VERSION.split()[1]),
            (
                "pyOpenSSL",
                pyopenssl_pair,
                SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode().split()[1],
            ),
        ):
            for tls in ("1.3", "1.2"):
                for tickets in (False, True):
                    us, what = measure(factory(certs, tls, tickets), args.count)
                    label = f"{name} (OpenSSL {lib})"
                    print(f"{label:<28} {tls:>4} {tickets!s:>8} {us:>17.0f}  {what}", flush=True)
        us, what = measure(pyopenssl_pair(certs, "1.3", False, p256=True), args.count)
        print(f"{'pyOpenSSL, P-256 key share':<28} {'1.3':>4} {'False':>8} {us:>17.0f}  {what}")


if __name__ == "__main__":
    main()
