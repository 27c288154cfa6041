# SPDX-License-Identifier: MPL-2.0
"""`-register`: the proxy registers itself as a `connect-proxy`, as `consul connect proxy` does.

ID `<service>-proxy[-<register-id>]`, name `<service>-proxy`, Address/Port from `-listen`, the
upstreams from `-upstream`, and a TTL check ("proxy heartbeat", TTL 30 s, ID `<id>-ttl`)
passed every 10 s. The registration is re-made if the agent lost it (agent restart), and
removed on a clean exit, as `consul connect proxy -register` does.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from meshkit.config import UpstreamListener
from meshkit.consul.client import ConsulClient, ConsulError, ConsulHTTPError

log = logging.getLogger("meshkit.consul.register")

HEARTBEAT_S = 10.0
RECONCILE_S = 30.0
TTL = "30s"


@dataclass(frozen=True, slots=True)
class SelfRegistration:
    service: str
    listen_host: str
    listen_port: int
    local_host: str
    local_port: int
    upstreams: tuple[UpstreamListener, ...] = ()
    register_id: str = ""

    @property
    def proxy_id(self) -> str:
        base = f"{self.service}-proxy"
        return f"{base}-{self.register_id}" if self.register_id else base

    @property
    def check_id(self) -> str:
        return f"{self.proxy_id}-ttl"

    def body(self) -> dict[str, Any]:
        """CamelCase, as the HTTP API wants (agent config files take snake_case instead)."""
        ups: list[dict[str, Any]] = []
        for up in self.upstreams:
            item: dict[str, Any] = {
                "DestinationType": up.dst_type,
                "DestinationName": up.name,
                "LocalBindAddress": up.bind_host,
                "LocalBindPort": up.bind_port,
            }
            if up.datacenter:
                item["Datacenter"] = up.datacenter
            ups.append(item)
        return {
            "Kind": "connect-proxy",
            "ID": self.proxy_id,
            "Name": f"{self.service}-proxy",
            "Address": self.listen_host,
            "Port": self.listen_port,
            "Proxy": {
                "DestinationServiceName": self.service,
                "LocalServiceAddress": self.local_host,
                "LocalServicePort": self.local_port,
                "Upstreams": ups,
            },
            "Check": {
                "CheckID": self.check_id,
                "Name": "proxy heartbeat",
                "TTL": TTL,
                "Notes": "meshkit-proxy heartbeat every 10s",
            },
        }


class Registrar:
    def __init__(self, client: ConsulClient, reg: SelfRegistration) -> None:
        self.client, self.reg = client, reg
        self._task: asyncio.Task[None] | None = None

    async def register(self) -> None:
        """Raises ConsulHTTPError (e.g. 403 without service:write) for the caller to report."""
        await self.client.put("/v1/agent/service/register", self.reg.body())
        log.info("registered %s as connect-proxy for %s", self.reg.proxy_id, self.reg.service)
        await self._pass()

    async def _pass(self) -> None:
        await self.client.put(f"/v1/agent/check/pass/{self.reg.check_id}")

    async def _loop(self) -> None:
        since_reconcile = 0.0
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            since_reconcile += HEARTBEAT_S
            try:
                if since_reconcile >= RECONCILE_S:
                    since_reconcile = 0.0
                    resp = await self.client.get(
                        f"/v1/agent/service/{self.reg.proxy_id}", allow_404=True
                    )
                    if resp.status == 404:
                        log.warning("registration %s is gone; registering again", self.reg.proxy_id)
                        await self.register()
                        continue
                await self._pass()
            except ConsulHTTPError as exc:
                if exc.status == 404:  # check lost with an agent restart: register again
                    try:
                        await self.register()
                    except ConsulError as again:
                        log.warning("re-registration failed: %s", again)
                else:
                    log.warning("heartbeat failed: %s", exc)
            except ConsulError as exc:
                log.warning("heartbeat failed: %s", exc)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def deregister(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.client.put(f"/v1/agent/service/deregister/{self.reg.proxy_id}", timeout=5)
            log.info("deregistered %s", self.reg.proxy_id)
        except ConsulError as exc:
            log.warning("deregistration of %s failed: %s", self.reg.proxy_id, exc)
