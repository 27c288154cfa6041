# SPDX-License-Identifier: MPL-2.0
"""Index- and hash-based blocking queries, with Consul's `wait` defaults and caps."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from aiohttp import web

from meshkit_tools.devagent.decode import DecodeError, parse_duration
from meshkit_tools.devagent.store import Store, wait_event

DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0


class BadQuery(ValueError):
    """A query parameter Consul would refuse with 400."""


def wait_time(request: web.Request) -> float:
    """`wait` in seconds: default 5m, capped at 10m, plus up to wait/16 of jitter."""
    raw = request.query.get("wait", "")
    try:
        wait = parse_duration(raw) if raw else DEFAULT_WAIT
    except DecodeError as exc:
        raise BadQuery(f"Invalid wait time: {exc}") from None
    wait = min(wait, MAX_WAIT) if wait > 0 else DEFAULT_WAIT
    return wait + random.uniform(0, wait / 16)


def min_index(request: web.Request) -> int:
    raw = request.query.get("index", "")
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise BadQuery("Invalid index") from None


async def block_on_index(request: web.Request, store: Store, index_of: Callable[[], int]) -> int:
    """Return once the watched index passes the client's, or at `wait`.

    An index lower than the client's (a server reset) returns at once rather than hanging
    until the new history catches up, so the client can apply Consul's reset rule (an index
    lower than the previous one means: start again from 0).
    """
    want = min_index(request)
    if want <= 0:
        return index_of()
    deadline = time.monotonic() + wait_time(request)
    while True:
        event = store.notifier.current()
        current = index_of()
        if current != want:
            return current
        remaining = deadline - time.monotonic()
        if remaining <= 0 or store.notifier.closed:
            return current
        await wait_event(event, remaining)


async def block_on_hash(
    request: web.Request, store: Store, hash_of: Callable[[], str | None]
) -> None:
    """Hash blocking for `/v1/agent/service/:id`: wait for a different hash or `wait`."""
    want = request.query.get("hash", "")
    if not want:
        return
    deadline = time.monotonic() + wait_time(request)
    while True:
        event = store.notifier.current()
        current = hash_of()
        if current != want:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0 or store.notifier.closed:
            return
        await wait_event(event, remaining)
