"""Upstream listeners: accept a local client → resolve → dial + handshake → check identity → copy.

Targets are tried in the resolver's order within one `connect_timeout_ms` budget; a dial,
handshake or identity failure moves on to the next target, and the local client's socket is
closed only when no target worked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from meshkit.copy import Leg, TLSLeg
from meshkit.failures import PeerMismatch, handshake_reason
from meshkit.inbound import splice
from meshkit.resolver import Target
from meshkit.tls import IdentityError, identity_of

if TYPE_CHECKING:
    from meshkit.config import UpstreamListener
    from meshkit.metrics import Labels
    from meshkit.runtime import Proxy

log = logging.getLogger("meshkit.upstream")


class _LocalLeg(Leg):
    """The local client's socket; starts the dial once accepted."""

    __slots__ = ("conn",)

    def __init__(self, conn: UpstreamConn) -> None:
        super().__init__(conn._lost)
        self.conn = conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.hold()
        self.conn.start()


class UpstreamConn:
    inbound = False
    __slots__ = (
        "finished",
        "labels",
        "local",
        "proxy",
        "remote",
        "spec",
        "started",
        "target",
        "task",
    )

    def __init__(self, proxy: Proxy, spec: UpstreamListener, labels: Labels) -> None:
        self.proxy = proxy
        self.spec = spec
        self.labels = labels
        self.started = time.monotonic()
        self.local = _LocalLeg(self)
        self.remote: TLSLeg | None = None
        self.target: Target | None = None
        self.task: asyncio.Task[None] | None = None
        self.finished = False

    def byte_counts(self) -> tuple[int, int]:
        return self.local.nbytes, self.remote.nbytes if self.remote is not None else 0

    def start(self) -> None:
        self.proxy.metrics.open_flow(self)
        self.proxy.metrics.inc("connections_total", self.labels)
        self.task = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        try:
            await self._connect_inner()
        finally:
            self._maybe_done()

    async def _connect_inner(self) -> None:
        proxy, spec = self.proxy, self.spec
        loop = asyncio.get_running_loop()
        deadline = loop.time() + spec.connect_timeout_ms / 1000.0
        try:
            async with asyncio.timeout_at(deadline):  # no extra task, unlike wait_for
                targets = list(await spec.resolver.targets())
        except Exception as exc:
            proxy.metrics.inc("dial_failures_total", self.labels)
            log.error("upstream %s: no targets: %s", spec.name, exc)
            self.local.abort()
            return
        if not targets:
            proxy.metrics.inc("dial_failures_total", self.labels)
            log.error("upstream %s: resolver returned no targets", spec.name)
            self.local.abort()
            return
        for target in targets:
            if self.local.lost:
                return
            if deadline - loop.time() <= 0:
                break
            leg = await self._try(target, deadline)
            if leg is None:
                continue
            if self.local.lost:
                leg.close()
                return
            self.remote, self.target = leg, target
            log.debug("upstream %s: connected to %s:%d", spec.name, target.host, target.port)
            splice(self.local, leg)
            return
        log.error("upstream %s: all %d target(s) failed or timed out", spec.name, len(targets))
        self.local.abort()

    async def _try(self, target: Target, deadline: float) -> TLSLeg | None:
        proxy, spec = self.proxy, self.spec
        side = proxy.certs.client
        if side is None:
            proxy.metrics.inc("dial_failures_total", self.labels)
            log.error("upstream %s: no TLS material loaded yet", spec.name)
            return None
        loop = asyncio.get_running_loop()
        budget = deadline - loop.time()
        done: asyncio.Future[BaseException | None] = loop.create_future()

        def handshaken(leg: TLSLeg, exc: BaseException | None) -> None:
            if exc is None:
                leg.hold()
            if not done.done():
                done.set_result(exc)

        def verify(leg: TLSLeg) -> BaseException | None:
            try:
                ident = identity_of(leg.peer_der())
            except IdentityError as exc:
                return exc
            if not ident.service.same_service(target.expected):
                return PeerMismatch(
                    f"peer certificate mismatch: expected {target.expected}, got {ident.service}"
                )
            return None

        def factory() -> TLSLeg:
            return TLSLeg(side, handshaken, self._lost_remote, verify=verify)

        leg: TLSLeg | None = None
        try:
            async with asyncio.timeout(budget):
                _, leg = await loop.create_connection(factory, target.host, target.port)
        except (OSError, TimeoutError) as exc:
            if leg is not None:
                leg.abort()
            proxy.metrics.inc("dial_failures_total", self.labels)
            log.warning(
                "upstream %s: dial %s:%d failed: %s",
                spec.name,
                target.host,
                target.port,
                exc or "timeout",
            )
            return None
        failure: BaseException | None
        try:
            async with asyncio.timeout(max(deadline - loop.time(), 0.001)):
                failure = await done
        except TimeoutError as exc:
            failure = exc
        if failure is None:
            return leg
        reason = handshake_reason(failure)
        proxy.metrics.inc("handshake_failures_total", (*self.labels, ("reason", reason)))
        log.warning(
            "upstream %s: handshake with %s:%d failed (%s): %s",
            spec.name,
            target.host,
            target.port,
            reason,
            failure or "timeout",
        )
        leg.abort()
        return None

    def _lost_remote(self, leg: Leg, exc: BaseException | None) -> None:
        if leg is self.remote:
            self._maybe_done()

    def _lost(self, leg: Leg, exc: BaseException | None) -> None:
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.finished or not self.local.lost:
            return
        if self.remote is not None and not self.remote.lost:
            return
        task = self.task
        if task is not None and not task.done() and asyncio.current_task() is not task:
            return
        self.finished = True
        self.proxy.metrics.close_flow(self)
        self.proxy.flow_closed()
        if log.isEnabledFor(logging.DEBUG):
            up, down = self.byte_counts()
            log.debug(
                "upstream %s closed after %.3fs: %d bytes out, %d in",
                self.spec.name,
                time.monotonic() - self.started,
                up,
                down,
            )
