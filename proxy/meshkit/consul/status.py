# SPDX-License-Identifier: MPL-2.0
"""Fail-static reporting: whether Consul answers, on /ready, /metrics and in the log.

When the agent is unreachable the proxy keeps serving the last known state; this loop is what
tells the operator so (one log line per change) and exports each watch's health and age.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from meshkit.consul.watch import WatchGroup, reason_of

if TYPE_CHECKING:
    from meshkit.runtime import Proxy

log = logging.getLogger("meshkit.consul")

STATUS_INTERVAL_S = 0.5


async def report_status(group: WatchGroup, proxy: Proxy) -> None:
    """Runs until cancelled: the group's reachability and per-watch metrics, every half second."""
    last: bool | None = None
    while True:
        reachable = group.reachable
        if reachable != last:
            if reachable:
                log.info("Consul reachable; state is current")
            else:
                failing = ", ".join(f"{s.name} ({s.last_error})" for s in group.failing())
                log.warning("Consul unreachable, serving the last known state: %s", failing)
            last = reachable
        proxy.set_control_plane_reachable(
            reachable, "; ".join(reason_of(s) for s in group.failing())
        )
        for watch in group.watches:
            lbl = (("watch", watch.name),)
            proxy.metrics.set("consul_watch_healthy", lbl, 1 if watch.status.healthy else 0)
            proxy.metrics.set("consul_watch_failures", lbl, watch.status.failures)
            age = time.monotonic() - watch.status.last_success if watch.status.has_value else -1
            proxy.metrics.set("consul_watch_age_seconds", lbl, round(age, 1))
        await asyncio.sleep(STATUS_INTERVAL_S)
