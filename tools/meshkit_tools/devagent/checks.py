# SPDX-License-Identifier: MPL-2.0
"""Checks that really run: TCP and HTTP dialled on their interval, TTL deadlines, aliases.

Each check is one asyncio task keyed by its ID and definition, so re-registering a changed
check restarts it and an unchanged one keeps its status and schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import aiohttp

from meshkit_tools.devagent.catalog import CRITICAL, PASSING, WARNING, Check, worst
from meshkit_tools.devagent.state import State

OUTPUT_MAX = 4096


def _split_hostport(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def _dial_error(exc: BaseException) -> str:
    """Go's wording for the usual dial failures, as Consul's TCP check output carries it."""
    if isinstance(exc, ConnectionRefusedError):
        return "connect: connection refused"
    if isinstance(exc, TimeoutError):
        return "i/o timeout"
    return str(exc) or type(exc).__name__


class CheckRunner:
    def __init__(self, state: State, max_interval: float | None = None) -> None:
        self.state = state
        self.max_interval = max_interval
        self.tasks: dict[str, tuple[str, asyncio.Task[None]]] = {}
        self.ttl_deadline: dict[str, float] = {}
        self.critical_since: dict[str, float] = {}
        self._session: aiohttp.ClientSession | None = None
        self._reaper: asyncio.Task[None] | None = None
        self.stopping = False
        self._keys: dict[str, tuple[Check, str]] = {}

    def start(self) -> None:
        self.state.on_checks_changed = self.sync
        self.state.on_status_changed = self._status_changed
        self._reaper = asyncio.get_running_loop().create_task(self._reap())
        self.sync()

    async def stop(self) -> None:
        # Python 3.11's wait_for can swallow a cancellation that races a completion, so the
        # loops also watch `stopping`, and the wait for them is bounded.
        self.stopping = True
        tasks = [t for _, t in self.tasks.values()]
        if self._reaper is not None:
            tasks.append(self._reaper)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        self.tasks.clear()
        if self._session is not None:
            await self._session.close()

    def sync(self) -> None:
        """Start tasks for new or changed checks, cancel those for removed ones."""
        wanted: dict[str, str] = {}
        keys: dict[str, tuple[Check, str]] = {}
        for chk in self.state.checks.values():
            seen = self._keys.get(chk.check_id)
            if seen is not None and seen[0] is chk:
                key = seen[1]  # same object: definition unchanged, skip re-serialising
            else:
                key = json.dumps([chk.type, chk.definition], sort_keys=True)
            keys[chk.check_id] = (chk, key)
            wanted[chk.check_id] = key
        self._keys = keys
        for check_id, (key, task) in list(self.tasks.items()):
            if wanted.get(check_id) != key:
                task.cancel()
                del self.tasks[check_id]
                self.ttl_deadline.pop(check_id, None)
        loop = asyncio.get_running_loop()
        for check_id, key in wanted.items():
            if check_id in self.tasks:
                continue
            chk = self.state.checks[check_id]
            if chk.type == "alias":
                continue
            runner = {
                "tcp": self._run_tcp,
                "http": self._run_http,
                "ttl": self._run_ttl,
            }.get(chk.type, self._run_unsupported)
            self.tasks[check_id] = (key, loop.create_task(runner(check_id)))
        self._refresh_aliases()

    def _interval(self, chk: Check) -> float:
        interval = float(chk.definition.get("Interval") or 10.0)
        if self.max_interval is not None:
            interval = min(interval, self.max_interval)
        return max(interval, 0.05)

    def _timeout(self, chk: Check) -> float:
        return float(chk.definition.get("Timeout") or 10.0)

    def _record(self, check_id: str, status: str, output: str) -> None:
        if status == CRITICAL:
            self.critical_since.setdefault(check_id, time.monotonic())
        else:
            self.critical_since.pop(check_id, None)
        self.state.set_status(check_id, status, output[:OUTPUT_MAX])

    async def _run_tcp(self, check_id: str) -> None:
        while not self.stopping and (chk := self.state.checks.get(check_id)) is not None:
            addr = chk.definition["TCP"]
            try:
                host, port = _split_hostport(addr)
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), self._timeout(chk)
                )
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
                self._record(check_id, PASSING, f"TCP connect {addr}: Success")
            except (OSError, TimeoutError, ValueError) as exc:
                self._record(check_id, CRITICAL, f"dial tcp {addr}: {_dial_error(exc)}")
            await asyncio.sleep(self._interval(chk))

    async def _run_http(self, check_id: str) -> None:
        while not self.stopping and (chk := self.state.checks.get(check_id)) is not None:
            d = chk.definition
            url, method = d["HTTP"], d.get("Method") or "GET"
            if self._session is None:
                self._session = aiohttp.ClientSession()
            headers = {
                k: ", ".join(v) if isinstance(v, list) else str(v)
                for k, v in (d.get("Header") or {}).items()
            }
            try:
                async with self._session.request(
                    method,
                    url,
                    data=d.get("Body") or None,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self._timeout(chk)),
                    ssl=not d.get("TLSSkipVerify"),
                ) as resp:
                    body = (await resp.content.read(OUTPUT_MAX)).decode(errors="replace")
                    text = f"HTTP {method} {url}: {resp.status} {resp.reason} Output: {body}"
                    if 200 <= resp.status < 300:
                        self._record(check_id, PASSING, text)
                    elif resp.status == 429:
                        self._record(check_id, WARNING, text)
                    else:
                        self._record(check_id, CRITICAL, text)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                self._record(check_id, CRITICAL, f"Get {url}: {exc or 'timeout'}")
            await asyncio.sleep(self._interval(chk))

    async def _run_ttl(self, check_id: str) -> None:
        chk = self.state.checks.get(check_id)
        if chk is None:
            return
        ttl = float(chk.definition["TTL"])
        self.ttl_deadline.setdefault(check_id, time.monotonic() + ttl)
        while not self.stopping and check_id in self.state.checks:
            remaining = self.ttl_deadline.get(check_id, 0) - time.monotonic()
            if remaining <= 0:
                cur = self.state.checks[check_id]
                self._record(
                    check_id,
                    CRITICAL,
                    f"TTL expired (last output before timeout follows): {cur.output}"
                    if cur.status != CRITICAL
                    else cur.output or "TTL expired",
                )
                self.ttl_deadline[check_id] = time.monotonic() + ttl
                continue
            await asyncio.sleep(remaining)

    def update_ttl(self, check_id: str, status: str, note: str) -> str | None:
        """`/v1/agent/check/{pass,warn,fail}/:id`; returns an error text or None."""
        chk = self.state.checks.get(check_id)
        if chk is None:
            return "unknown"
        if chk.type != "ttl":
            return f"CheckID {check_id!r} does not have associated TTL"
        self.ttl_deadline[check_id] = time.monotonic() + float(chk.definition["TTL"])
        self._record(check_id, status, note)
        return None

    def _refresh_aliases(self, target: str | None = None) -> None:
        """Alias checks follow their target's checks at once, with no task or polling.

        `target` None refreshes every alias (after a registration change); otherwise only
        the aliases of that service ("" for the node).
        """
        aliases = [
            c
            for c in self.state.checks.values()
            if c.type == "alias"
            and (target is None or (c.definition.get("AliasService") or "") == target)
        ]
        if not aliases:
            return
        by_service: dict[str, list[Check]] = {}
        for c in self.state.checks.values():
            by_service.setdefault(c.service_id, []).append(c)
        for chk in aliases:
            aliased = chk.definition.get("AliasService") or ""
            if aliased and aliased not in self.state.services:
                self._record(chk.check_id, CRITICAL, "Service not found")
                continue
            if aliased:
                targets = [c for c in by_service.get(aliased, []) if c.check_id != chk.check_id]
            else:
                targets = self.state.node_checks()
            status = worst([c.status for c in targets])
            failing = next((c for c in targets if c.status == status != PASSING), None)
            if failing is None:
                text = "All checks passing." if targets else "No checks found."
                self._record(chk.check_id, PASSING, text)
            else:
                text = f"Aliased check {failing.name!r} {status}: {failing.output}"
                self._record(chk.check_id, status, text)

    def _status_changed(self, chk: Check) -> None:
        self._refresh_aliases(chk.service_id)

    async def _run_unsupported(self, check_id: str) -> None:
        chk = self.state.checks.get(check_id)
        if chk is not None:
            self._record(check_id, CRITICAL, f"{chk.type} checks are not run by meshkit dev-agent")

    async def _reap(self) -> None:
        """DeregisterCriticalServiceAfter: remove a service whose check stayed critical too long."""
        while not self.stopping:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for check_id, since in list(self.critical_since.items()):
                chk = self.state.checks.get(check_id)
                if chk is None:
                    self.critical_since.pop(check_id, None)
                    continue
                limit = chk.definition.get("DeregisterCriticalServiceAfter") or 0
                if limit and chk.service_id and now - since >= limit:
                    self.critical_since.pop(check_id, None)
                    self.state.deregister(chk.service_id)
