# SPDX-License-Identifier: MPL-2.0
"""The two sockets of a proxied connection (legs) and their splice: copying with back-pressure
and half-close.

Each socket is a `Leg` (an asyncio protocol); `splice` joins two of them. Bytes a leg receives
go straight into its peer's transport in the same callback: no queue, no task, no per-chunk
coroutine. When a peer's transport buffer passes its high-water mark the loop calls
`pause_writing` on it and we pause reading on the other side; `resume_writing` undoes that.
End of stream is forwarded as a half-close (TCP `shutdown(SHUT_WR)`, or a TLS close_notify)
and a socket is closed only once both of its directions are finished.

`TLSLeg` runs TLS itself over a plain transport through an `Engine` (memory buffers). The
event loop's own TLS transports cannot half-close (no `write_eof`) and hide the handshake;
doing it here gives us half-close, an exact handshake deadline, and identity checks before any
byte moves.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from meshkit.tls import READ_VIEW, Engine, HandshakeError, Side, TLSRecordError

# Every socket reads into one buffer (`tls.READ_BUFFER`): the loop is single-threaded and each
# read is consumed (encrypted or decrypted in place by the TLS engine, or copied) before the
# callback returns, so an idle connection holds no read buffer of its own.
# `MESHKIT_READ_MODE=copy` switches back to `data_received` (a fresh `bytes` per read) for A/B
# measurements: the buffered mode measured ~35% less CPU per GiB when it came; with one engine
# call per record (`seal_read`/`open_read`) the two measured within noise of each other, small
# messages and bulk alike (docs/benchmark.md, "Issue 19, third pass").
READ_MODE = os.environ.get("MESHKIT_READ_MODE", "buffered")
_ReadBase: type[asyncio.BaseProtocol] = (
    asyncio.Protocol if READ_MODE == "copy" else asyncio.BufferedProtocol
)
_READ_VIEW = READ_VIEW

# How much a leg keeps unsent before pausing its peer.
HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024
# Plaintext buffered before the two legs are joined (early data after the handshake).
PENDING_LIMIT = 256 * 1024


class Leg(_ReadBase):  # type: ignore[valid-type,misc]
    """A plain TCP socket of a spliced pair."""

    encrypts = False  # True for TLS legs: `send` consumes its argument before returning

    __slots__ = (
        "eof_in",
        "eof_out",
        "lost",
        "nbytes",
        "on_lost",
        "peer",
        "pending",
        "pending_eof",
        "transport",
    )

    def __init__(self, on_lost: Callable[[Leg, BaseException | None], None] | None = None):
        self.transport: Any = None
        self.peer: Leg | None = None
        self.pending: list[bytes] = []
        self.pending_eof = False
        self.eof_in = False
        self.eof_out = False
        self.lost = False
        self.nbytes = 0  # plaintext bytes received on this leg and handed to the peer
        self.on_lost = on_lost

    # -- wiring ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)  # type: ignore[attr-defined]

    def join(self, peer: Leg) -> None:
        """Start copying; deliver anything that arrived before the peer existed."""
        self.peer = peer
        if self.pending:
            data = b"".join(self.pending)
            self.pending.clear()
            self.nbytes += len(data)
            peer.send(data)
        if self.pending_eof:
            self.pending_eof = False
            peer.send_eof()
        if not self.lost and not self.eof_in:
            self.transport.resume_reading()

    # -- receiving ------------------------------------------------------------------------
    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_VIEW

    def buffer_updated(self, nbytes: int) -> None:
        peer = self.peer
        if peer is not None and peer.encrypts:
            # A TLS peer encrypts the bytes in place before returning: no copy, no slice.
            self.nbytes += nbytes
            peer.send_read(nbytes)
        else:
            self._forward(bytes(_READ_VIEW[:nbytes]))

    def data_received(self, data: bytes) -> None:
        self._forward(data)

    def _forward(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None:
            self.nbytes += len(data)
            peer.send(data)
        else:
            self.pending.append(data)
            if sum(map(len, self.pending)) > PENDING_LIMIT:
                self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._got_eof()
        return True  # keep the write side open: half-close

    def _got_eof(self) -> None:
        if self.eof_in:
            return
        self.eof_in = True
        if self.peer is not None:
            self.peer.send_eof()
        else:
            self.pending_eof = True
        self._maybe_close()

    # -- sending --------------------------------------------------------------------------
    def send(self, data: bytes | memoryview) -> None:
        if not self.lost:
            self.transport.write(data)

    def send_read(self, nbytes: int) -> None:
        """`send` of the first `nbytes` of the shared read buffer; TLS legs encrypt in place."""
        self.send(bytes(_READ_VIEW[:nbytes]))

    def send_eof(self) -> None:
        if self.eof_out or self.lost:
            return
        self.eof_out = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._maybe_close()

    def _maybe_close(self) -> None:
        if self.eof_in and self.eof_out and not self.lost:
            self.transport.close()

    # -- flow control ---------------------------------------------------------------------
    def pause_writing(self) -> None:
        peer = self.peer
        if peer is not None and not peer.lost:
            peer.transport.pause_reading()

    def resume_writing(self) -> None:
        peer = self.peer
        if peer is not None and not peer.lost and not peer.eof_in:
            peer.transport.resume_reading()

    # -- teardown -------------------------------------------------------------------------
    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        peer = self.peer
        if peer is not None and not peer.lost:
            # A reset travels on as a reset; a clean close lets the peer flush what it holds.
            if exc is not None:
                peer.abort()
            else:
                peer.close()
        if self.on_lost is not None:
            self.on_lost(self, exc)

    def close(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.abort()


class TLSLeg(Leg):
    """A TLS socket of a spliced pair; the TLS engine runs over memory buffers."""

    encrypts = True

    __slots__ = (
        "_timeout",
        "engine",
        "handshake_done",
        "on_handshake",
        "side",
        "timer",
        "verify",
    )

    def __init__(
        self,
        side: Side,
        on_handshake: Callable[[TLSLeg, BaseException | None], None],
        on_lost: Callable[[Leg, BaseException | None], None] | None = None,
        handshake_timeout: float | None = None,
        verify: Callable[[TLSLeg], BaseException | None] | None = None,
    ) -> None:
        super().__init__(on_lost)
        self.side = side
        self.verify = verify
        self.on_handshake: Callable[[TLSLeg, BaseException | None], None] | None = on_handshake
        self.engine: Engine | None = None
        self.handshake_done = False
        self.timer: asyncio.TimerHandle | None = None
        self._timeout = handshake_timeout

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.engine = self.side.engine()
        if self._timeout is not None:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(self._timeout, self._handshake_timeout)
        if not self.side.server_side:
            self._handshake()

    # -- handshake ------------------------------------------------------------------------
    def _handshake(self) -> None:
        engine = self.engine
        assert engine is not None
        try:
            done = engine.handshake()
        except HandshakeError as exc:
            self._flush()  # send the alert, if any
            self._handshake_failed(exc)
            return
        if not done:
            self._flush()
            return
        if self.verify is not None:
            # Checked before our last flight leaves: with TLS 1.3 a client that rejects the
            # server's identity never sends its Finished, so the server never completes.
            failure = self.verify(self)
            if failure is not None:
                self._handshake_failed(failure)
                return
        self.handshake_done = True
        self._cancel_timer()
        callback, self.on_handshake = self.on_handshake, None
        if callback is not None:
            # A callback that joins the legs at once sends the first data in the same write
            # as our last flight (the client's Finished): one segment instead of two.
            callback(self, None)
        # What is left: a client's last flight, which must go now, or a TLS 1.3 server's
        # session tickets, which nobody waits for and which ride with our next record.
        if not self.side.server_side or engine.version() != "TLSv1.3":
            self._flush()
        # Application data may have arrived together with the peer's last flight.
        if not self.lost:
            self._read_tls()

    def _handshake_failed(self, exc: BaseException) -> None:
        self._cancel_timer()
        callback, self.on_handshake = self.on_handshake, None
        if callback is not None:
            callback(self, exc)
        self.close()  # after any queued alert

    def _handshake_timeout(self) -> None:
        self.timer = None
        if not self.handshake_done:
            self._handshake_failed(TimeoutError("TLS handshake deadline passed"))

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    # -- receiving ------------------------------------------------------------------------
    def buffer_updated(self, nbytes: int) -> None:
        if not self.handshake_done:
            self.data_received(_READ_VIEW[:nbytes])  # the engine copies it into its BIO
            return
        engine = self.engine
        assert engine is not None
        try:
            data, eof = engine.open_read(nbytes)  # decrypted straight from the shared buffer
        except TLSRecordError:
            self.abort()
            return
        if data:
            self._forward(data)
        if eof:
            self._got_eof()

    def data_received(self, data: bytes | memoryview) -> None:
        engine = self.engine
        assert engine is not None
        engine.feed(data)
        if not self.handshake_done:
            if self.on_handshake is None:
                return  # failed already
            self._handshake()
            return
        self._read_tls()

    def _read_tls(self) -> None:
        engine = self.engine
        assert engine is not None
        try:
            data, eof = engine.read()
        except TLSRecordError:
            self.abort()
            return
        # Post-handshake replies (a KeyUpdate answer) are not flushed here: TLS 1.3 only asks
        # that they precede our next record, and `send`/`send_eof` flush the engine first.
        if data:
            self._forward(data)
        if eof:
            self._got_eof()

    def eof_received(self) -> bool:
        # TCP end without close_notify. Before the handshake it is a failed handshake; after
        # it a truncation we pass on as end of stream (as most TLS proxies do).
        if not self.handshake_done:
            self._handshake_failed(ConnectionResetError("peer closed during TLS handshake"))
            return False
        self._got_eof()
        return True

    # -- sending --------------------------------------------------------------------------
    def _flush(self) -> None:
        if self.engine is not None and not self.lost and not self.transport.is_closing():
            out = self.engine.take_output()
            if out:
                self.transport.write(out)

    def send(self, data: bytes | memoryview) -> None:
        engine = self.engine
        if self.lost or self.eof_out or engine is None:
            return
        try:
            engine.write(data)
        except TLSRecordError:
            self.abort()
            return
        out = engine.take_output()
        if out:
            self.transport.write(out)

    def send_read(self, nbytes: int) -> None:
        """`send` of the first `nbytes` of the shared read buffer (a plain peer's read)."""
        engine = self.engine
        if self.lost or self.eof_out or engine is None:
            return
        try:
            out = engine.seal_read(nbytes)
        except TLSRecordError:
            self.abort()
            return
        if out:
            self.transport.write(out)

    def send_eof(self) -> None:
        if self.eof_out or self.lost or self.engine is None:
            return
        self.eof_out = True
        try:
            self.engine.shutdown()  # queue close_notify; reading continues
        except TLSRecordError:
            self.abort()
            return
        self._flush()
        self._maybe_close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if not self.handshake_done and self.on_handshake is not None:
            callback, self.on_handshake = self.on_handshake, None
            callback(self, exc or ConnectionResetError("connection closed during TLS handshake"))
        super().connection_lost(exc)

    def peer_der(self) -> bytes | None:
        return self.engine.peer_der() if self.engine is not None else None


def splice(a: Leg, b: Leg) -> None:
    """Join two legs both ways: from here on each forwards what it reads to the other."""
    a.peer, b.peer = b, a
    a.join(b)
    b.join(a)
