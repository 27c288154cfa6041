# SPDX-License-Identifier: MPL-2.0
"""Blocking watches on Consul endpoints, with the discipline Consul's own watches keep.

Every watch keeps its last good value when Consul fails (fail-static), retries with Consul's
own back-off (5 s x failures^2, capped at 180 s, jittered), and never spins: index resets and
a token bucket bound how often it can call, even against a misbehaving agent.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from meshkit.consul.client import (
    BLOCKING_GRACE_S,
    ConsulClient,
    ConsulError,
    ConsulHTTPError,
    Response,
)

log = logging.getLogger("meshkit.consul.watch")

T = TypeVar("T")


class MalformedAnswer(ValueError):
    """Consul answered, but not in a shape we can read; the last good value stays in force."""

    def __init__(self, path: str, exc: BaseException) -> None:
        super().__init__(f"malformed answer from GET {path}: {exc or type(exc).__name__}")
        self.path = path


class Mode(enum.Enum):
    INDEX = "index"  # ?index=<X-Consul-Index>&wait=
    HASH = "hash"  # ?hash=<X-Consul-ContentHash>&wait=
    POLL = "poll"  # no blocking support (prepared queries): call every `poll_interval_s`


@dataclass(frozen=True, slots=True)
class Policy:
    wait_s: float = 300.0
    backoff_base_s: float = 5.0
    backoff_cap_s: float = 180.0
    poll_interval_s: float = 2.0
    # Token bucket for returns that come back at once (burst, then `refill_per_s`).
    bucket_capacity: float = 5.0
    refill_per_s: float = 2.0


def backoff_delay(failures: int, policy: Policy, rng: random.Random | None = None) -> float:
    """Consul's watch plan: 5 s x failures^2, capped at 180 s; plus up to 1/8 jitter."""
    if failures <= 0:
        return 0.0
    base = min(policy.backoff_base_s * failures * failures, policy.backoff_cap_s)
    return base + (rng or random).uniform(0, base / 8)


def next_index(previous: int, returned: int | None) -> int:
    """The index to block on next: reset when it goes backwards, never below 1."""
    if returned is None:
        return 0
    if returned <= 0:
        return 1
    if returned < previous:
        return 0
    return max(returned, 1)


def wait_param(seconds: float) -> str:
    """Milliseconds, as Consul's Go client sends them."""
    return f"{max(1, round(seconds * 1000))}ms"


class TokenBucket:
    def __init__(self, capacity: float, refill_per_s: float) -> None:
        self.capacity, self.refill = capacity, refill_per_s
        self.tokens = capacity
        self.stamp = time.monotonic()

    def delay(self) -> float:
        """Take one token; return how long to sleep first if the bucket was empty."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.refill)
        self.stamp = now
        self.tokens -= 1
        if self.tokens >= 0:
            return 0.0
        return -self.tokens / self.refill


@dataclass
class WatchStatus:
    """What fail-static reporting needs to know about one watch."""

    name: str
    path: str = ""  # the endpoint, for the log and /ready
    has_value: bool = False
    healthy: bool = False
    failures: int = 0
    last_error: str = ""
    last_success: float = 0.0  # time.monotonic()


Decode = Callable[[Response], T]
OnUpdate = Callable[[T], Awaitable[None]]


class Watch(Generic[T]):
    """Keeps one endpoint's decoded value current and calls `on_update` when it changes."""

    def __init__(
        self,
        client: ConsulClient,
        name: str,
        path: str,
        *,
        mode: Mode,
        decode: Decode[T],
        on_update: OnUpdate[T] | None = None,
        params: Sequence[tuple[str, str]] = (),
        policy: Policy | None = None,
        use_dc: bool = False,
        use_stale: bool = False,
        allow_404: bool = False,
    ) -> None:
        self.client, self.name, self.path, self.mode = client, name, path, mode
        self.decode, self.on_update = decode, on_update
        self.params = list(params)
        self.policy = policy or Policy()
        self.use_dc, self.use_stale, self.allow_404 = use_dc, use_stale, allow_404
        self.status = WatchStatus(name=name, path=path)
        self.value: T | None = None
        self.index = 0
        self.hash: str | None = None
        self._bucket = TokenBucket(self.policy.bucket_capacity, self.policy.refill_per_s)
        self._changed = asyncio.Event()

    def _query(self, blocking: bool) -> tuple[list[tuple[str, str]], float]:
        params = list(self.params)
        timeout = 15.0
        if blocking and self.mode is Mode.INDEX and self.index > 0:
            params += [("index", str(self.index)), ("wait", wait_param(self.policy.wait_s))]
            timeout = self.policy.wait_s * (1 + 1 / 16) + BLOCKING_GRACE_S
        elif blocking and self.mode is Mode.HASH and self.hash:
            params += [("hash", self.hash), ("wait", wait_param(self.policy.wait_s))]
            timeout = self.policy.wait_s * (1 + 1 / 16) + BLOCKING_GRACE_S
        return params, timeout

    async def fetch(self, blocking: bool = True) -> bool:
        """One call; updates state and returns True when the decoded value changed.

        Raises ConsulError (or the decoder's ValueError) without touching the last value.
        """
        params, timeout = self._query(blocking)
        resp = await self.client.get(
            self.path,
            params=params,
            timeout=timeout,
            use_dc=self.use_dc,
            use_stale=self.use_stale,
            allow_404=self.allow_404,
        )
        try:
            value = self.decode(resp)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            # One reader per shape raises ValueError; anything else a decoder trips over is
            # still "Consul sent something we cannot read", never a reason to stop watching.
            if isinstance(exc, MalformedAnswer):
                raise
            raise MalformedAnswer(self.path, exc) from exc
        if self.mode is Mode.INDEX:
            self.index = next_index(self.index, resp.index)
        elif self.mode is Mode.HASH:
            self.hash = resp.content_hash or _body_hash(resp)
        changed = not self.status.has_value or value != self.value
        self.value = value
        self.status.has_value = True
        self.status.healthy = True
        self.status.failures = 0
        self.status.last_error = ""
        self.status.last_success = time.monotonic()
        if changed:
            self._changed.set()
            if self.on_update is not None:
                await self.on_update(value)
        return changed

    async def run(self) -> None:
        """Loop until cancelled. Failures back off; the last value stays in force."""
        resync = False
        while True:
            started = time.monotonic()
            try:
                # After a failure the first call does not block: it proves Consul is back at
                # once (a blocking call would only answer at the next change or at `wait`)
                # and re-reads state that may have changed while we could not see it.
                await self.fetch(blocking=self.mode is not Mode.POLL and not resync)
                resync = False
            except asyncio.CancelledError:
                raise
            except (ConsulError, ValueError, KeyError, TypeError) as exc:
                resync = True
                self.status.failures += 1
                self.status.healthy = False
                self.status.last_error = _describe(exc)
                delay = backoff_delay(self.status.failures, self.policy)
                log.warning(
                    "consul watch %s (GET %s) failed (%s); keeping the last value, retry in %.1fs",
                    self.name,
                    self.path,
                    self.status.last_error,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            if self.mode is Mode.POLL:
                await asyncio.sleep(self.policy.poll_interval_s)
                continue
            if time.monotonic() - started < 1.0:
                pause = self._bucket.delay()
                if pause > 0:
                    await asyncio.sleep(pause)

    async def wait_changed(self, timeout: float) -> bool:
        """For callers that need "the next value" (tests, startup); bounded by timeout."""
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return False
        return True


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConsulHTTPError):
        return f"HTTP {exc.status}: {exc.message}"
    return str(exc) or type(exc).__name__


def reason_of(status: WatchStatus) -> str:
    """One watch's line for /ready and the log: its name and why it is not current."""
    where = f" (GET {status.path})" if status.path else ""
    return f"watch {status.name}{where}: {status.last_error or 'failing'}"


def _body_hash(resp: Response) -> str | None:
    body = resp.body
    if isinstance(body, dict):
        value = body.get("ContentHash")
        return value if isinstance(value, str) else None
    return None


@dataclass
class WatchGroup:
    """All watches of one proxy, for /ready and /metrics ("is the control plane reachable")."""

    watches: list[Watch[object]] = field(default_factory=list)

    def add(self, watch: Watch[T]) -> Watch[T]:
        self.watches.append(watch)  # type: ignore[arg-type]
        return watch

    def remove(self, watch: Watch[T]) -> None:
        if watch in self.watches:
            self.watches.remove(watch)  # type: ignore[arg-type]

    @property
    def reachable(self) -> bool:
        """No watch is failing (one that has not answered yet is not failing)."""
        return all(w.status.failures == 0 for w in self.watches)

    def failing(self) -> list[WatchStatus]:
        return [w.status for w in self.watches if w.status.failures > 0]
