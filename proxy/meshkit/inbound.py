# SPDX-License-Identifier: MPL-2.0
"""The public listener: accept → TLS handshake (deadline) → identity → authorize → dial app → copy.

The local application is dialled only after the peer finished the handshake, proved a Consul
service identity and was authorized, so a refused or stalled peer never reaches it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast

from meshkit.authz import Decision, decide, decide_now
from meshkit.deadline import Deadline
from meshkit.failures import FOREIGN_TRUST_DOMAIN, handshake_reason
from meshkit.flow import Flow, FlowHost
from meshkit.legs import Leg, TLSLeg, splice
from meshkit.tls import IdentityError, PeerIdentity, identity_of

if TYPE_CHECKING:
    from meshkit.config import PublicListener
    from meshkit.spiffe import ServiceID
    from meshkit.tls import Side

log = logging.getLogger("meshkit.inbound")


def accept(host: FlowHost, spec: PublicListener) -> asyncio.BaseProtocol:
    """The protocol for one socket the public listener accepted: the TLS leg of a new
    `InboundConn`, or a refusal when no server certificate is loaded."""
    side = host.certs.server
    if side is None:
        # Only a race with a certificate change can get here; refuse, never crash the loop.
        return _refusal(host)
    return InboundConn(host, spec, side).accepted


def _refusal(host: FlowHost) -> asyncio.Protocol:
    labels = host.inbound_labels
    host.metrics.inc("connections_total", labels)
    host.metrics.inc("handshake_failures_total", (*labels, ("reason", "no_tls_material")))
    log.warning("inbound connection refused: no TLS material loaded")
    return _Refusal()


class _Refusal(asyncio.Protocol):
    """Closes an accepted socket at once: there is no certificate to present."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).abort()


class InboundConn(Flow):
    """One mesh connection to the public listener: `accepted` is the peer's TLS leg,
    `dialled` the local app's socket."""

    inbound = True
    __slots__ = ("peer", "spec")

    accepted: TLSLeg

    def __init__(self, host: FlowHost, spec: PublicListener, side: Side) -> None:
        super().__init__(host, host.inbound_labels)
        self.spec = spec
        self.peer: ServiceID | None = None  # spelled as a URI only when a line is logged
        self.accepted = TLSLeg(
            side,
            on_handshake=self._handshaken,
            on_lost=self._lost,
            handshake_timeout=spec.handshake_timeout_ms / 1000.0,
        )
        self._opened()

    def _handshaken(self, leg: TLSLeg, exc: BaseException | None) -> None:
        metrics = self.host.metrics
        if exc is not None:
            reason = handshake_reason(exc)
            metrics.inc("handshake_failures_total", (*self.labels, ("reason", reason)))
            # A bare connect-and-close is what TCP health checks do: count it, keep logs quiet.
            level = logging.DEBUG if reason == "eof" else logging.WARNING
            log.log(level, "inbound handshake failed (%s): %s", reason, exc)
            return
        try:
            ident = identity_of(leg.peer_der())
        except (IdentityError, ValueError) as err:
            metrics.inc("handshake_failures_total", (*self.labels, ("reason", "bad_identity")))
            log.warning("inbound peer refused: %s", err)
            leg.abort()
            return
        self.peer = ident.service
        trusted = self.host.certs.trust_domains
        if ident.service.trust_domain not in trusted:
            foreign = ("reason", FOREIGN_TRUST_DOMAIN)
            metrics.inc("handshake_failures_total", (*self.labels, foreign))
            log.warning(
                "inbound peer %s refused: trust domain %s is not ours (%s)",
                ident.service,
                ident.service.trust_domain,
                ", ".join(sorted(trusted)) or "none loaded",
            )
            leg.abort()
            return
        # Until the app is joined, what the peer sends waits in the leg (bounded: the leg
        # stops reading at `legs.PENDING_LIMIT`).
        loop = asyncio.get_running_loop()
        decision = decide_now(self.host.authorizer, ident.service, ident.serial)
        if decision is None:  # the authorizer must ask over the network
            self.task = loop.create_task(self._authorize_then_dial(ident))
        elif self._admit(ident, decision):
            self.task = loop.create_task(self._dial(ident))

    def _admit(self, ident: PeerIdentity, decision: Decision) -> bool:
        if decision.allowed:
            return True
        self.host.metrics.inc("authz_denials_total", self.labels)
        log.warning("inbound from %s denied: %s", ident.service, decision.reason)
        self.accepted.abort()
        return False

    async def _authorize_then_dial(self, ident: PeerIdentity) -> None:
        try:
            decision = await decide(self.host.authorizer, ident.service, ident.serial)
            if self._admit(ident, decision):
                await self._dial_app(ident)
        finally:
            self._maybe_done()

    async def _dial(self, ident: PeerIdentity) -> None:
        try:
            await self._dial_app(ident)
        finally:
            self._maybe_done()

    async def _dial_app(self, ident: PeerIdentity) -> None:
        """Connect to the local app within `local_connect_timeout_ms`, then splice."""
        host, leg, spec = self.host, self.accepted, self.spec
        if leg.lost:
            return
        loop = asyncio.get_running_loop()
        deadline = Deadline(loop, spec.local_connect_timeout_ms / 1000.0)
        failure: OSError | None = None  # TimeoutError included
        try:
            _, app = await loop.create_connection(
                lambda: Leg(self._lost), spec.local_host, spec.local_port
            )
        except OSError as exc:
            failure = exc
        except asyncio.CancelledError:
            if not deadline.claim():
                raise
            failure = TimeoutError("timeout")
        finally:
            deadline.cancel()
        if failure is not None:
            host.metrics.inc("dial_failures_total", self.labels)
            log.error(
                "inbound from %s: local app %s:%d unreachable: %s",
                ident.service,
                spec.local_host,
                spec.local_port,
                failure,
            )
            leg.abort()
            return
        self.dialled = app
        if leg.lost:
            app.close()
            return
        log.debug("inbound from %s serial %s connected to local app", ident.service, ident.serial)
        splice(leg, app)

    def _log_closed(self, seconds: float) -> None:
        if log.isEnabledFor(logging.DEBUG):
            up, down = self.byte_counts()
            log.debug(
                "inbound from %s closed after %.3fs: %d bytes in, %d out",
                self.peer or "?",
                seconds,
                up,
                down,
            )
