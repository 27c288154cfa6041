# SPDX-License-Identifier: MPL-2.0
"""CPU per 64-byte message through meshkit's OpenSSL engine, as it is and with a trimmed path.

`current` drives `meshkit.openssl_engine` through its `Engine` methods (write, take_output,
feed, read); `trimmed` does the same work with the fewest cffi calls and no intermediate
lists (bytes straight into `SSL_write`, one `BIO_read`, one `SSL_read`). Both encrypt on a
client engine and decrypt on a server engine after a real mutual handshake.
Usage: ``python -m bench.experiments.engine_message [--count N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from OpenSSL._util import ffi, lib

from bench.certs import make_certs
from meshkit.openssl_engine import openssl_sides

MSG = bytes(64)


def engines() -> tuple[Any, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        c = make_certs(Path(tmp))
        roots = (c.roots.read_text(),)
        server, _ = openssl_sides(c.server.chain.read_text(), c.server.key.read_text(), roots)
        _, client = openssl_sides(c.client.chain.read_text(), c.client.key.read_text(), roots)
    a, b = client.engine(), server.engine()
    for _ in range(10):
        done_a = a.handshake()
        if out := a.take_output():
            b.feed(out)
        done_b = b.handshake()
        if out := b.take_output():
            a.feed(out)
        if done_a and done_b:
            break
    b.read()
    a.read()
    a.take_output()
    b.take_output()
    return a, b


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=50000)
    parser.add_argument("--repeat", type=int, default=4)
    args = parser.parse_args(argv)
    a, b = engines()
    wire = bytearray(1 << 18)
    wire_ptr, wire_view = ffi.from_buffer(wire), memoryview(wire)
    plain = bytearray(1 << 18)
    plain_ptr, plain_view = ffi.from_buffer(plain), memoryview(plain)
    # The engines' OpenSSL handles (attributes of meshkit's OpenSSLEngine).
    a_ssl, a_wbio, b_ssl, b_rbio = a.ssl, a.wbio, b.ssl, b.rbio

    def current() -> bytes:
        a.write(MSG)
        b.feed(a.take_output())
        data, _ = b.read()
        b.take_output()
        return bytes(data)

    def trimmed() -> bytes:
        lib.SSL_write(a_ssl, MSG, len(MSG))
        n = lib.BIO_read(a_wbio, wire_ptr, len(wire))
        lib.BIO_write(b_rbio, bytes(wire_view[:n]), n)
        n = lib.SSL_read(b_ssl, plain_ptr, len(plain))
        data = bytes(plain_view[:n])
        lib.SSL_get_error(b_ssl, lib.SSL_read(b_ssl, plain_ptr, len(plain)))
        return data

    paths: list[tuple[str, Callable[[], bytes]]] = [("current", current), ("trimmed", trimmed)]
    for _, path in paths:
        assert path() == MSG
    for _ in range(args.repeat):
        for name, path in paths:
            t0 = time.process_time()
            for _ in range(args.count):
                path()
            us = (time.process_time() - t0) / args.count * 1e6
            print(f"{name:8} {us:5.2f} µs CPU per 64-byte message (encrypt + decrypt)", flush=True)


if __name__ == "__main__":
    main()
