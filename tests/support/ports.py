# SPDX-License-Identifier: MPL-2.0
"""A free loopback TCP port, for every test that binds a listener it names in a config."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (free now; a test binds it soon after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
