# SPDX-License-Identifier: MPL-2.0
"""Warn once about each proxy `Config` key meshkit-proxy does not apply, naming its source.

The agent answers one merged `Proxy.Config`; it does not say which key came from where. The
source is worked out by reading the config entries the agent merged from, when the token may
(`GET /v1/config/proxy-defaults/global` and `/v1/config/service-defaults/<service>`, one
request each, only when a new key needs attributing):

- a proxy `Config` key that `proxy-defaults` holds with the same value: `proxy-defaults`;
- `protocol` equal to the service's (or, on an upstream, the destination's) `service-defaults`
  Protocol: `service-defaults <name>`;
- anything else: `registration` (the proxy's own service definition);
- when the entries cannot be read (ACL 403, agent unreachable): `registration or
  proxy-defaults (config entries not readable: <why>)`, so the warning is never wrong.

Never fatal, never silent: other proxies of the same mesh (Envoy) may use the key. Values are
not logged: opaque Config may hold anything.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from meshkit.consul.client import ConsulClient, ConsulError
from meshkit.consul.registration import Registration

log = logging.getLogger("meshkit.consul.config")

_UPSTREAM_RE = re.compile(r"^Proxy\.Upstreams\[\d+\]\.Config \((?P<name>[^)]*)\)$")


class KeyWarner:
    def __init__(self, client: ConsulClient) -> None:
        self.client = client
        self.warned: set[tuple[str, str, str]] = set()

    async def check(self, reg: Registration) -> None:
        """Log each not-yet-reported (where, key, why) of `reg.unsupported` with its source."""
        new = [item for item in reg.unsupported if item not in self.warned]
        if not new:
            return
        entries = await self._entries(reg.service, new)
        for where, key, why in new:
            self.warned.add((where, key, why))
            source = self._source(where, key, reg, entries)
            log.warning(
                "%s key %r from %s: %s; ignored by this proxy (other proxies of the mesh may "
                "use it)",
                where,
                key,
                source,
                why,
            )

    async def _entries(self, service: str, new: list[tuple[str, str, str]]) -> dict[str, Any] | str:
        """The entries that may have contributed, or why they cannot be read."""
        names = {service}
        for where, _key, _why in new:
            match = _UPSTREAM_RE.match(where)
            if match:
                names.add(match.group("name"))
        out: dict[str, Any] = {}
        try:
            resp = await self.client.get("/v1/config/proxy-defaults/global", allow_404=True)
            out["proxy-defaults"] = resp.body if isinstance(resp.body, dict) else {}
            for name in sorted(names):
                resp = await self.client.get(f"/v1/config/service-defaults/{name}", allow_404=True)
                out[f"service-defaults/{name}"] = resp.body if isinstance(resp.body, dict) else {}
        except ConsulError as exc:
            return str(exc)[:200]
        return out

    @staticmethod
    def _source(
        where: str,
        key: str,
        reg: Registration,
        entries: dict[str, Any] | str,
    ) -> str:
        if isinstance(entries, str):
            return f"registration or proxy-defaults (config entries not readable: {entries})"
        match = _UPSTREAM_RE.match(where)
        owner = match.group("name") if match else reg.service
        svc_defaults = entries.get(f"service-defaults/{owner}") or {}
        if key == "protocol" and svc_defaults.get("Protocol"):
            return f"service-defaults {owner!r}"
        if match is None:
            defaults = (entries.get("proxy-defaults") or {}).get("Config") or {}
            if key in defaults and reg.config.get(key) == defaults[key]:
                return "proxy-defaults"
        return "registration"
