# SPDX-License-Identifier: MPL-2.0
"""Consul-mode startup failures: the texts that name the fix, and the one retry rule.

Shared by the proxy (consul/mode.py) and Connect-native services (meshkit.native): both start
by asking the local agent for roots, a leaf and intentions, and both must say the same thing
when the agent is missing or the token lacks rights.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from meshkit.consul.client import ConsulError, ConsulHTTPError, ConsulUnavailable
from meshkit.consul.settings import Settings

log = logging.getLogger("meshkit.consul")

T = TypeVar("T")


class StartupError(RuntimeError):
    """The proxy cannot start; the message says why and what to change."""


def explain(exc: ConsulError, what: str, settings: Settings, service: str = "") -> str:
    """Turn a startup failure into a message that names the fix."""
    if isinstance(exc, ConsulHTTPError) and exc.status == 403:
        source = settings.token_source or "no token: the agent's default token was used"
        need = f"service:write on {service!r}" if service else "the needed ACL rights"
        return (
            f"{what}: Consul refused it (HTTP 403: {exc.message}). The ACL token ({source}) "
            f"needs {need}; a token with a service identity for {service or 'the service'} "
            "has it. Pass it with -token, -token-file or CONSUL_HTTP_TOKEN(_FILE)."
        )
    if isinstance(exc, ConsulUnavailable):
        return (
            f"{what}: {exc}. Is the Consul agent running? Set -http-addr or CONSUL_HTTP_ADDR "
            "to its HTTP address."
        )
    return f"{what}: {exc}"


async def startup_call(label: str, call: Callable[[], Awaitable[T]], deadline: float) -> T:
    """Retry only "agent unreachable" at startup (it may be starting too), within a bound."""
    delay = 0.5
    while True:
        try:
            return await call()
        except ConsulUnavailable as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s: %s; retrying in %.1fs", label, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
