# SPDX-License-Identifier: MPL-2.0
"""Upstream listeners: accept a local client → resolve → dial + handshake → check identity → copy.

Targets are tried in the resolver's order within one `connect_timeout_ms` budget; a dial,
handshake or identity failure moves on to the next target, and the local client's socket is
closed only when no target worked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from meshkit.deadline import Deadline
from meshkit.failures import PeerMismatch, handshake_reason
from meshkit.flow import Flow, FlowHost
from meshkit.legs import Leg, TLSLeg, splice
from meshkit.resolver import Target
from meshkit.tls import IdentityError, identity_of

if TYPE_CHECKING:
    from meshkit.config import UpstreamListener
    from meshkit.metrics import Labels

log = logging.getLogger("meshkit.upstream")


def accept(host: FlowHost, spec: UpstreamListener, labels: Labels) -> asyncio.BaseProtocol:
    """The protocol for one socket an upstream listener accepted: a new `UpstreamConn`'s
    local leg, which starts the dial once the loop hands it the socket."""
    return UpstreamConn(host, spec, labels).accepted


class _LocalLeg(Leg):
    """The local client's socket; starts the dial once accepted.

    It keeps reading while the dial runs: early bytes wait in `pending` (bounded by
    `legs.PENDING_LIMIT`) and leave with the client's last handshake flight.
    """

    __slots__ = ("conn",)

    def __init__(self, conn: UpstreamConn) -> None:
        super().__init__(conn._lost)
        self.conn = conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.conn.start()


class UpstreamConn(Flow):
    """One local client of an upstream listener: `accepted` is the client's socket, `dialled`
    the TLS leg to the target that passed its checks (None until then)."""

    inbound = False
    __slots__ = ("attempt", "deadline", "spec", "target")

    accepted: _LocalLeg
    dialled: TLSLeg | None

    def __init__(self, host: FlowHost, spec: UpstreamListener, labels: Labels) -> None:
        super().__init__(host, labels)
        self.spec = spec
        self.accepted = _LocalLeg(self)
        self.target: Target | None = None
        self.attempt: tuple[Target, TLSLeg | None] | None = None  # the dial in flight
        self.deadline: Deadline | None = None

    def start(self) -> None:
        self._opened()
        self.task = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        try:
            await self._connect_inner()
        finally:
            self._maybe_done()

    async def _connect_inner(self) -> None:
        """Try the targets in order under one deadline for the whole dial."""
        spec = self.spec
        loop = asyncio.get_running_loop()
        self.deadline = deadline = Deadline(loop, spec.connect_timeout_ms / 1000.0)
        targets: Sequence[Target] = ()
        try:
            targets = await self._resolve()
            for target in targets:
                if self.accepted.lost or await self._try(target):
                    return
            if targets:
                log.error(
                    "upstream %s: all %d target(s) failed or timed out", spec.name, len(targets)
                )
        except asyncio.CancelledError:
            if not deadline.claim():
                raise
            self._timed_out(len(targets))
        finally:
            deadline.cancel()
        self.accepted.abort()

    async def _resolve(self) -> Sequence[Target]:
        """The candidates, from memory when the resolver has them; () after counting and
        logging a resolver that failed or had none."""
        host, spec = self.host, self.spec
        try:
            found = spec.resolver.targets_now()
            targets = found if found is not None else await spec.resolver.targets()
        except Exception as exc:  # the resolver's own failure; our deadline is not an Exception
            host.metrics.inc("dial_failures_total", self.labels)
            log.error("upstream %s: no targets: %s", spec.name, exc)
            return ()
        if not targets:
            host.metrics.inc("dial_failures_total", self.labels)
            log.error("upstream %s: resolver returned no targets", spec.name)
        return targets

    def _timed_out(self, n_targets: int) -> None:
        """The deadline passed: count what was in flight as the old per-step timeouts did."""
        spec, metrics = self.spec, self.host.metrics
        attempt, self.attempt = self.attempt, None
        if attempt is None:  # still waiting for the resolver's first answer
            metrics.inc("dial_failures_total", self.labels)
            log.error("upstream %s: no targets within the connect timeout", spec.name)
            return
        target, leg = attempt
        if leg is None:
            metrics.inc("dial_failures_total", self.labels)
            what = "dial"
        else:
            leg.abort()
            metrics.inc("handshake_failures_total", (*self.labels, ("reason", "timeout")))
            what = "handshake"
        log.warning(
            "upstream %s: %s with %s:%d timed out", spec.name, what, target.host, target.port
        )
        log.error(
            "upstream %s: all %d target(s) failed or timed out (connect timeout %s ms)",
            spec.name,
            n_targets,
            spec.connect_timeout_ms,
        )

    async def _try(self, target: Target) -> bool:
        """One target: dial, handshake, check identity. True once the legs are joined."""
        host, spec = self.host, self.spec
        side = host.certs.client
        if side is None:
            host.metrics.inc("dial_failures_total", self.labels)
            log.error("upstream %s: no TLS material loaded yet", spec.name)
            return False
        loop = asyncio.get_running_loop()
        done: asyncio.Future[BaseException | None] = loop.create_future()

        def handshaken(leg: TLSLeg, exc: BaseException | None) -> None:
            if exc is None:
                deadline = self.deadline
                if deadline is not None and deadline.fired:
                    exc = TimeoutError("connect timeout passed during the handshake")
                else:
                    self._join(leg, target)
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
            return TLSLeg(side, handshaken, self._lost_target_leg, verify=verify)

        self.attempt = (target, None)
        try:
            _, leg = await loop.create_connection(factory, target.host, target.port)
        except OSError as exc:
            self.attempt = None
            host.metrics.inc("dial_failures_total", self.labels)
            log.warning(
                "upstream %s: dial %s:%d failed: %s", spec.name, target.host, target.port, exc
            )
            return False
        self.attempt = (target, leg)
        failure = await done
        self.attempt = None
        if failure is None:
            return True
        reason = handshake_reason(failure)
        host.metrics.inc("handshake_failures_total", (*self.labels, ("reason", reason)))
        log.warning(
            "upstream %s: handshake with %s:%d failed (%s): %s",
            spec.name,
            target.host,
            target.port,
            reason,
            failure or "timeout",
        )
        leg.abort()
        return False

    def _join(self, leg: TLSLeg, target: Target) -> None:
        """Called from the handshake callback, so the first bytes leave with our Finished."""
        if self.deadline is not None:
            self.deadline.cancel()
        self.dialled, self.target = leg, target
        if self.accepted.lost:
            leg.close()
            return
        log.debug("upstream %s: connected to %s:%d", self.spec.name, target.host, target.port)
        splice(self.accepted, leg)

    def _lost_target_leg(self, leg: Leg, exc: BaseException | None) -> None:
        # A leg of an attempt that failed ends without ending the flow.
        if leg is self.dialled:
            self._maybe_done()

    def _log_closed(self, seconds: float) -> None:
        if log.isEnabledFor(logging.DEBUG):
            up, down = self.byte_counts()
            log.debug(
                "upstream %s closed after %.3fs: %d bytes out, %d in",
                self.spec.name,
                seconds,
                up,
                down,
            )
