# SPDX-License-Identifier: MPL-2.0
"""A small blocking facade over `meshkit.native.Service`, for code that is not asyncio.

    from meshkit.native.sync import Service
    with Service("worker") as svc:               # fetches leaf, roots, intentions; watches them
        sock = svc.connect("db")                 # a blocking ssl.SSLSocket, identity verified
        sock.sendall(b"..."); sock.recv(4096)

The watches run on an event loop in one daemon thread owned by the facade, so rotation and
intention changes apply while the caller blocks. Serving stays asyncio (`Service.start_server`
or `meshkit.native.web`): a guarded accept loop has nothing to gain from threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import ssl
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from meshkit.native import service as native
from meshkit.native.destination import Target, destination_of
from meshkit.native.errors import DialFailed, IdentityMismatch, NoHealthyInstance

T = TypeVar("T")


class Service:
    """The blocking twin of `meshkit.native.Service` (same arguments)."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"meshkit-native-{name}", daemon=True
        )
        self._thread.start()
        self.aio: native.Service = self._call(self._make(name, kwargs), 10.0)

    @staticmethod
    async def _make(name: str, kwargs: dict[str, Any]) -> native.Service:
        return native.Service(name, **kwargs)

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"meshkit.native: no answer within {timeout}s") from None

    def __enter__(self) -> Service:
        self.ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ready(self, timeout: float = native.DEFAULT_START_TIMEOUT_S) -> None:
        self._call(self.aio.ready(timeout), timeout + 5.0)

    def connect(
        self, target: Target, *, timeout: float = native.DEFAULT_CONNECT_TIMEOUT_S
    ) -> ssl.SSLSocket:
        """A blocking mTLS socket to a healthy instance, tried in turn within `timeout`."""
        dest = destination_of(target)
        deadline = time.monotonic() + timeout
        found = self._call(self.aio.instances(dest), timeout)
        if not found:
            raise NoHealthyInstance(f"{dest}: no healthy Connect-capable instance")
        problems: list[str] = []
        mismatches = 0
        for inst in found:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            raw: socket.socket | None = None
            try:
                raw = socket.create_connection((inst.host, inst.port), timeout=left)
                sock = self.aio.client_ssl_context().wrap_socket(raw, server_hostname=None)
            except (OSError, ssl.SSLError) as exc:
                if raw is not None:
                    raw.close()
                problems.append(f"{inst.host}:{inst.port}: {type(exc).__name__}: {exc}")
                continue
            problem = self.aio.server_problem(sock, dest.pinned or inst.expected)
            if problem:
                mismatches += 1
                sock.close()
                problems.append(f"{inst.host}:{inst.port}: {problem}")
                continue
            sock.settimeout(None)
            return sock
        detail = "; ".join(problems) or "deadline reached"
        if mismatches and mismatches == len(problems):
            raise IdentityMismatch(f"{dest}: {detail}")
        raise DialFailed(f"{dest}: every instance failed within {timeout}s: {detail}")

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._call(self.aio.close(), 10.0)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()
