# SPDX-License-Identifier: MPL-2.0
"""Upstream targets from Consul, kept current off the connection's critical path.

`service` upstreams follow `/v1/health/connect/<name>?passing&stale[&dc=]` with a blocking
watch; `prepared_query` upstreams poll `/v1/query/<name>/execute?connect=true[&dc=]` (queries
do not block). `targets()` only reads the cached list, in a rotating order so load spreads and
the proxy can retry the next instance when one fails, as Consul's built-in proxy does for
both kinds of upstream. The cached list
stays in force while Consul is away (fail-static).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

from meshkit.consul.client import ConsulClient, Response
from meshkit.consul.watch import Mode, Policy, Watch
from meshkit.resolver import PREPARED_QUERY, SERVICE, Target
from meshkit.spiffe import ServiceID

log = logging.getLogger("meshkit.consul.discovery")

FIRST_RESULT_WAIT_S = 2.0


def entry_target(entry: Any, kind: str, fallback_dc: str, trust_domain: str) -> Target | None:
    """One CheckServiceNode → a Target, or None when the entry cannot carry mTLS."""
    if not isinstance(entry, dict):
        return None
    node_raw = entry.get("Node")
    node: dict[str, Any] = node_raw if isinstance(node_raw, dict) else {}
    svc = entry.get("Service")
    if not isinstance(svc, dict):
        return None
    if svc.get("Kind") == "connect-proxy":
        proxy_raw = svc.get("Proxy")
        proxy: dict[str, Any] = proxy_raw if isinstance(proxy_raw, dict) else {}
        dest = proxy.get("DestinationServiceName") or ""
    elif isinstance(svc.get("Connect"), dict) and svc["Connect"].get("Native"):
        dest = svc.get("Service") or ""
    else:
        return None
    host = svc.get("Address") or node.get("Address") or ""
    port = svc.get("Port")
    if not dest or not host or not isinstance(port, int) or port <= 0:
        return None
    dc = node.get("Datacenter") or fallback_dc or "dc1"
    expected = ServiceID(
        trust_domain=trust_domain, namespace="default", datacenter=dc, service=dest
    )
    return Target(host=host, port=port, expected=expected, kind=kind)


def decode_entries(
    entries: Any, kind: str, fallback_dc: str, trust_domain: str
) -> tuple[Target, ...]:
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise ValueError("discovery: expected a list of service entries")
    out = []
    for entry in entries:
        target = entry_target(entry, kind, fallback_dc, trust_domain)
        if target is not None:
            out.append(target)
    # Sorted so that "no change" compares equal whatever order Consul used.
    return tuple(sorted(out, key=lambda t: (t.host, t.port, t.expected.datacenter)))


def decode_execute(body: Any, fallback_dc: str, trust_domain: str) -> tuple[Target, ...]:
    """`/v1/query/<name>/execute?connect=true`: `Nodes` may be `[]` or `null` (no results)."""
    if not isinstance(body, dict):
        raise ValueError("prepared query execute: expected an object")
    fallback = body.get("Datacenter") or fallback_dc
    return decode_entries(body.get("Nodes"), PREPARED_QUERY, str(fallback), trust_domain)


class ConsulResolver:
    """A Resolver over one watched upstream."""

    def __init__(
        self,
        client: ConsulClient,
        kind: str,
        name: str,
        datacenter: str,
        *,
        local_dc: Callable[[], str],
        trust_domain: Callable[[], str],
        policy: Policy | None = None,
    ) -> None:
        self.kind, self.name, self.datacenter = kind, name, datacenter
        self._local_dc, self._trust_domain = local_dc, trust_domain
        params: list[tuple[str, str]]
        if kind == SERVICE:
            path = f"/v1/health/connect/{name}"
            params = [("passing", "1"), ("stale", "")]
            mode = Mode.INDEX
        elif kind == PREPARED_QUERY:
            path = f"/v1/query/{name}/execute"
            params = [("connect", "true")]
            mode = Mode.POLL
        else:
            raise ValueError(f"unknown upstream destination type {kind!r}")
        if datacenter:
            params.append(("dc", datacenter))
        self.watch: Watch[tuple[Target, ...]] = Watch(
            client,
            f"{kind}:{name}",
            path,
            mode=mode,
            params=params,
            decode=self._decode,
            on_update=self._on_update,
            policy=policy,
            use_dc=not datacenter,
        )
        self._counter = itertools.count(random.randrange(1 << 16))
        self._task: asyncio.Task[None] | None = None

    def _decode(self, resp: Response) -> tuple[Target, ...]:
        fallback = self.datacenter or self._local_dc()
        if self.kind == PREPARED_QUERY:
            return decode_execute(resp.body, fallback, self._trust_domain())
        return decode_entries(resp.body, self.kind, fallback, self._trust_domain())

    async def _on_update(self, targets: tuple[Target, ...]) -> None:
        log.info(
            "upstream %s %s: %s",
            self.kind,
            self.name,
            ", ".join(f"{t.host}:{t.port}" for t in targets) or "no healthy instances",
        )

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.watch.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def targets(self) -> Sequence[Target]:
        """The cached instances, rotated; waits briefly only before the very first result."""
        if not self.watch.status.has_value:
            await self.watch.wait_changed(FIRST_RESULT_WAIT_S)
        return self._rotated()

    def targets_now(self) -> Sequence[Target] | None:
        return self._rotated() if self.watch.status.has_value else None

    def _rotated(self) -> Sequence[Target]:
        found = self.watch.value or ()
        if len(found) <= 1:
            return found
        start = next(self._counter) % len(found)
        return found[start:] + found[:start]
