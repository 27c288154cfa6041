# SPDX-License-Identifier: MPL-2.0
"""Fixtures for the dev-agent tests: the real process (tests/support/devagent.py) and listeners."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A real loopback TCP listener for TCP checks to dial."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield sock
    finally:
        sock.close()
