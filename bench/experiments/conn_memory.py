# SPDX-License-Identifier: MPL-2.0
"""Resident memory per established, idle TLS endpoint, by library and buffer mode.

Handshakes `--count` client/server pairs over memory BIOs in this process (no sockets),
keeps them all alive, and reports the growth of RSS per endpoint. The proxy holds two TLS
endpoints per mesh connection across the pair (one on each side), so twice this figure is
the TLS share of the benchmark's "KiB per idle connection". Run one library per process:
``python -m bench.experiments.conn_memory ssl|pyopenssl|pyopenssl-release [--count N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import ssl
import tempfile
from pathlib import Path
from typing import Any

from OpenSSL import SSL

from bench.certs import make_certs
from bench.experiments.handshake_cost import _pyopenssl_ctx, _stdlib_ctx

KIB = 1024


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("library", choices=["ssl", "pyopenssl", "pyopenssl-release"])
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args(argv)
    keep: list[Any] = []
    with tempfile.TemporaryDirectory() as tmp:
        certs = make_certs(Path(tmp))
        if args.library == "ssl":
            sctx = _stdlib_ctx(certs.server, certs.roots, True, "1.3", False)
            cctx = _stdlib_ctx(certs.client, certs.roots, False, "1.3", False)

            def pair() -> tuple[Any, ...]:
                bios = [ssl.MemoryBIO() for _ in range(4)]
                c = cctx.wrap_bio(bios[0], bios[1], server_side=False)
                s = sctx.wrap_bio(bios[2], bios[3], server_side=True)
                for _ in range(10):
                    for obj in (c, s):
                        with contextlib.suppress(ssl.SSLWantReadError):
                            obj.do_handshake()
                    bios[2].write(bios[1].read())
                    bios[0].write(bios[3].read())
                c.write(b"x")
                bios[2].write(bios[1].read())
                assert s.read(1) == b"x"
                return (c, s, *bios)
        else:
            sctx2 = _pyopenssl_ctx(certs.server, certs.roots, "1.3", False)
            cctx2 = _pyopenssl_ctx(certs.client, certs.roots, "1.3", False)
            if args.library == "pyopenssl-release":
                for ctx in (sctx2, cctx2):
                    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)

            def pair() -> tuple[Any, ...]:
                c = SSL.Connection(cctx2, None)
                s = SSL.Connection(sctx2, None)
                c.set_connect_state()
                s.set_accept_state()
                for _ in range(10):
                    for obj in (c, s):
                        with contextlib.suppress(SSL.WantReadError):
                            obj.do_handshake()
                    for src, dst in ((c, s), (s, c)):
                        with contextlib.suppress(SSL.WantReadError):
                            dst.bio_write(src.bio_read(65536))
                c.send(b"x")
                s.bio_write(c.bio_read(65536))
                assert s.recv(1) == b"x"
                return (c, s)

        for _ in range(20):
            pair()  # warm caches and allocator pools before the baseline
        gc.collect()
        before = rss_kib()
        keep.extend(pair() for _ in range(args.count))
        gc.collect()
        grown = rss_kib() - before
    per_endpoint = grown / (2 * args.count)
    print(f"{args.library}: {per_endpoint:.1f} KiB RSS per idle TLS endpoint ({args.count} pairs)")


if __name__ == "__main__":
    main()
