# SPDX-License-Identifier: MPL-2.0
"""The life of one proxied connection, shared by the public listener's and the upstreams'.

A flow has two legs: `accepted`, the socket one of our listeners accepted, and `dialled`, the
socket we connected on its behalf (None until the two are spliced). It opens in the metrics
when it starts and closes exactly once: when both legs are gone and its dial task, if any, has
finished. While it is open the scrape reads its byte counts; closing adds them to the totals.

`FlowHost` names the little a flow takes from the runtime, so a connection depends on that
face and not on the whole `runtime.Proxy` (which imports the connection types to open them).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from meshkit.authz import Authorizer
    from meshkit.certstore import CertStore
    from meshkit.legs import Leg
    from meshkit.metrics import Labels, Metrics


class FlowHost(Protocol):
    """What a connection uses of the runtime that opened it."""

    @property
    def certs(self) -> CertStore:
        """The current TLS contexts (`server`, `client`) and trust domains."""
        ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def authorizer(self) -> Authorizer:
        """Decides inbound peers; replaced by `apply`, so read it per connection."""
        ...

    @property
    def inbound_labels(self) -> Labels:
        """The labels of the public listener's series (the service's name)."""
        ...

    def flow_closed(self) -> None:
        """Called once per flow, after it left `metrics.flows` (drain waits on this)."""
        ...


class Flow:
    """One proxied connection; also the `metrics.Flow` the scrape and the drain see.

    Subclasses create `accepted` in their constructor, call `_opened()` once the accepted
    socket is theirs, and route every leg's loss (and their dial task's end) to `_maybe_done`.
    """

    inbound: bool  # True for the public listener's flows (sets the metric names)

    __slots__ = ("accepted", "dialled", "finished", "host", "labels", "started", "task")

    accepted: Leg

    def __init__(self, host: FlowHost, labels: Labels) -> None:
        self.host = host
        self.labels = labels
        self.started = time.monotonic()
        self.dialled: Leg | None = None
        self.task: asyncio.Task[None] | None = None  # the dial, while it runs
        self.finished = False

    def byte_counts(self) -> tuple[int, int]:
        """Bytes read on the accepted leg, and on the dialled one (0 before it exists)."""
        dialled = self.dialled
        return self.accepted.nbytes, dialled.nbytes if dialled is not None else 0

    def abort(self) -> None:
        """Reset both sockets now: the drain's deadline passed with this flow still open."""
        self.accepted.abort()
        if self.dialled is not None:
            self.dialled.abort()

    def _opened(self) -> None:
        metrics = self.host.metrics
        metrics.open_flow(self)
        metrics.inc("connections_total", self.labels)

    def _lost(self, leg: Leg, exc: BaseException | None) -> None:
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.finished or not self.accepted.lost:
            return
        dialled = self.dialled
        if dialled is not None and not dialled.lost:
            return
        task = self.task
        if task is not None and not task.done() and asyncio.current_task() is not task:
            return  # the dial task finishes up and calls back
        self.finished = True
        host = self.host
        host.metrics.close_flow(self)
        host.flow_closed()
        self._log_closed(time.monotonic() - self.started)

    def _log_closed(self, seconds: float) -> None:
        """A DEBUG line for the closed flow, in the words (and logger) of its kind."""
        raise NotImplementedError
