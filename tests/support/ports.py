# SPDX-License-Identifier: MPL-2.0
"""A free loopback TCP port, for every test that binds a listener it names in a config.

Handing out what `bind(port 0)` just returned is racy twice over: that port comes from the
kernel's ephemeral range, so any outgoing connection on the machine (a proxy dialling the dev
agent, a client) may take it before the test binds it, and the next `bind(0)` may return the same
port again. So ports come from below the ephemeral range (10000-18999: nothing in the project
listens there by default and the kernel never picks them for outgoing connections), each one at
most once per process (a counter from a per-process offset), and each checked free when handed
out.
"""

from __future__ import annotations

import itertools
import os
import socket

FIRST, LAST = 10000, 18999  # below the ephemeral range (32768-60999 by default)
_next = itertools.count((os.getpid() * 7919) % (LAST - FIRST + 1))


def free_port() -> int:
    """A port on 127.0.0.1 that no other call of this process got, free now (bounded search)."""
    span = LAST - FIRST + 1
    for _ in range(span):
        port = FIRST + next(_next) % span
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port left in 127.0.0.1:{FIRST}-{LAST}")
