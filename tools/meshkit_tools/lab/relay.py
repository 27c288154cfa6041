# SPDX-License-Identifier: MPL-2.0
"""SSH ProxyCommand for isolated labs: one process relaying stdin/stdout to a TCP connection.

It runs inside the lab's gateway namespace (`ip netns exec`), the only place that can reach the
machines; a single process ends cleanly when either side closes (no orphaned helpers).
"""

from __future__ import annotations

import os
import selectors
import socket
import sys


def relay(host: str, port: int, *, connect_timeout: float = 10) -> int:
    try:
        sock = socket.create_connection((host, port), timeout=connect_timeout)
    except OSError as exc:
        print(f"meshkit lab relay: cannot connect to {host}:{port}: {exc}", file=sys.stderr)
        return 1
    sock.settimeout(None)
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(stdin, selectors.EVENT_READ)
    sel.register(sock, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            if key.fileobj == stdin:
                data = os.read(stdin, 65536)
                if not data:
                    sel.unregister(stdin)
                    sock.shutdown(socket.SHUT_WR)
                    continue
                sock.sendall(data)
            else:
                data = sock.recv(65536)
                if not data:
                    return 0
                os.write(stdout, data)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not args[1].isdigit():
        print("usage: python -m meshkit_tools.lab.relay HOST PORT", file=sys.stderr)
        return 2
    try:
        return relay(args[0], int(args[1]))
    except (BrokenPipeError, ConnectionResetError):
        return 0


if __name__ == "__main__":
    sys.exit(main())
