# SPDX-License-Identifier: MPL-2.0
"""A deadline for one connection's dial: a single timer that cancels the dialling task.

`asyncio.timeout()` builds a context-manager object and reschedules a timer on every entry;
a connection set-up needs exactly one deadline for its whole dial (all targets, handshakes
included), so one `call_later` handle does the job at a fraction of the per-connection cost.
"""

from __future__ import annotations

import asyncio


class Deadline:
    __slots__ = ("_handle", "_task", "fired")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("Deadline needs a running task")
        self._task = task
        self.fired = False
        self._handle: asyncio.TimerHandle | None = loop.call_later(max(seconds, 0.0), self._fire)

    def _fire(self) -> None:
        self._handle = None
        self.fired = True
        self._task.cancel()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def claim(self) -> bool:
        """After a CancelledError: True if it was this deadline's (and consume it), False if
        somebody else cancelled the task (the caller re-raises)."""
        if not self.fired:
            return False
        self._task.uncancel()
        return True
