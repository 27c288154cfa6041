# SPDX-License-Identifier: MPL-2.0
"""Bounded polling: every wait in the tests ends, and says what it waited for when it fails."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def _describe(what: str | Callable[..., str]) -> str:
    return what() if callable(what) else what


def wait_until(
    predicate: Callable[..., object],
    timeout: float = 5.0,
    interval: float = 0.05,
    what: str | Callable[..., str] = "",
) -> float:
    """Poll until `predicate()` is true; return the seconds it took.

    Raises AssertionError once `timeout` has passed (after one last look), with `what`
    in the message; `what` may be a callable (e.g. a process's log), read only then.
    """
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout}s: {_describe(what)}")
        time.sleep(interval)


async def wait_until_async(
    predicate: Callable[..., object], timeout: float, interval: float = 0.05
) -> bool:
    """The same poll inside an event loop (the loop keeps running between looks).

    Returns whether `predicate()` became true within `timeout`, for tests that assert it.
    """
    for _ in range(int(timeout / interval)):
        if predicate():
            return True
        await asyncio.sleep(interval)
    return bool(predicate())
