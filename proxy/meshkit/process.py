# SPDX-License-Identifier: MPL-2.0
"""The process shell both modes run in: the event loop, malloc tuning, and one `serve` for the
life of a running `Proxy` (signals, admin listener, wait, drain, close).

Static mode (static/serve.py) and Consul mode (consul/serve.py) differ only in where the
configuration comes from and what SIGHUP means; everything a process does around the data path
is here, once.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshkit.admin import AdminServer
    from meshkit.runtime import Proxy

log = logging.getLogger("meshkit.proxy")


def install_loop(choice: str) -> str:
    """uvloop when asked for or importable (auto); returns the loop actually used."""
    choice = os.environ.get("MESHKIT_EVENT_LOOP", choice) if choice == "auto" else choice
    if choice in ("auto", "uvloop"):
        try:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            return "uvloop"
        except ImportError:
            if choice == "uvloop":
                raise
    return "asyncio"


# glibc serves allocations above its mmap threshold (128 KiB at start) with fresh mappings and
# trims freed heap tops: every 256 KiB record buffer then costs page faults on first touch. With
# the buffers kept in the heap, bulk CPU per GiB measured 10-25% lower (docs/benchmark.md).
MMAP_THRESHOLD = 8 * 1024 * 1024
TRIM_THRESHOLD = 32 * 1024 * 1024
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_malloc() -> bool:
    """Keep record-sized buffers in the heap; a no-op where libc is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok_mmap: bool = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok_trim: bool = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return ok_mmap and ok_trim


def complain(text: str) -> None:
    """One `meshkit-proxy: ...` line on stderr: how every startup problem reaches the operator."""
    print(f"meshkit-proxy: {text}", file=sys.stderr, flush=True)


class Lifetime:
    """What a mode's callbacks share with `serve`: the stop switch, the failure flag and the
    background tasks (cancelled when the process ends)."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.failed = False
        self._background: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def request_stop(self) -> None:
        """SIGTERM/SIGINT (or a worker's control socket): drain and stop, logged once."""
        if not self.stop.is_set():
            log.info("stopping: draining connections")
        self.stop.set()

    def cancel_background(self) -> None:
        for task in list(self._background):
            task.cancel()


async def serve(
    proxy: Proxy,
    admin: AdminServer,
    *,
    admin_bind: tuple[str, int] | None,
    ready: str,
    drain_ms: Callable[[], float],
    on_hup: Callable[[], None],
    life: Lifetime | None = None,
    beside_drain: Callable[[float], Awaitable[None]] | None = None,
    after_drain: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Serve an applied `proxy` until SIGTERM/SIGINT (or `life.stop`), then drain and close.

    `drain_ms` is read when the stop comes (a reload may have changed it); `beside_drain` runs
    alongside the drain with the same deadline (static mode: the other workers' stop),
    `after_drain` before the admin listener closes. Returns the exit code: 1 when the admin
    listener cannot open or `life.failed` was set, else 0.
    """
    life = life or Lifetime()
    if admin_bind is not None:
        try:
            await admin.start(*admin_bind)
        except OSError as exc:
            complain(f"admin listener {admin_bind}: {exc}")
            life.cancel_background()
            return 1
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, life.request_stop)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    log.info("%s", ready)
    await life.stop.wait()
    drain_s = drain_ms() / 1000.0
    if beside_drain is not None:
        cut, _ = await asyncio.gather(proxy.drain(drain_s), beside_drain(drain_s))
    else:
        cut = await proxy.drain(drain_s)
    if cut:
        log.warning("%d connection(s) cut at the drain deadline", cut)
    if after_drain is not None:
        await after_drain()
    admin.close()
    life.cancel_background()
    return 1 if life.failed else 0
