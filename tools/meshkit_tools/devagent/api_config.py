# SPDX-License-Identifier: MPL-2.0
"""Config entries: `/v1/config`, with Consul 1.7's per-kind read and write rights."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from meshkit_tools.devagent.acl import Forbidden, Rights
from meshkit_tools.devagent.blocking import BadQuery, block_on_index
from meshkit_tools.devagent.catalog import NotFound
from meshkit_tools.devagent.configentries import KNOWN_KINDS
from meshkit_tools.devagent.http import (
    Area,
    Route,
    ServerError,
    filtered,
    meta_headers,
    read_json,
    reply,
)


class ConfigAPI(Area):
    def routes(self) -> list[Route]:
        return [
            Route("PUT", "/v1/config", self.config_put),
            Route("GET", "/v1/config/{kind}", self.config_list),
            Route("GET", "/v1/config/{kind}/{name}", self.config_get),
            Route("DELETE", "/v1/config/{kind}/{name}", self.config_delete),
        ]

    @staticmethod
    def _cas(request: web.Request) -> int | None:
        raw = request.query.get("cas")
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            raise BadQuery(f"Failed to parse cas: {raw!r}") from None

    @staticmethod
    def _config_can_read(r: Rights, kind: str, name: str) -> bool:
        """Consul 1.7's CanRead: proxy-defaults for anyone, intentions by intention:read,
        every other kind by service:read on its name."""
        if kind == "proxy-defaults":
            return True
        if kind == "service-intentions":
            return r.intention_read(name)
        return r.service_read(name)

    @staticmethod
    def _config_can_write(r: Rights, kind: str, name: str) -> bool:
        if kind == "proxy-defaults":
            return r.operator_write()
        if kind == "service-intentions":
            return r.intention_write(name)
        return r.service_write(name)

    def _readable_entries(self, r: Rights, rows: Any) -> Any:
        if not isinstance(rows, list):
            return rows
        return [
            e
            for e in rows
            if not isinstance(e, dict)
            or self._config_can_read(r, str(e.get("Kind", "")), str(e.get("Name", "")))
        ]

    async def config_put(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        body = await read_json(request)
        if not self._config_can_write(r, str(body.get("Kind", "")), str(body.get("Name", ""))):
            raise Forbidden("Permission denied")
        return reply(self.agent.config.put(body, self._cas(request)))

    @staticmethod
    def _config_kind(request: web.Request) -> str:
        kind = request.match_info["kind"]
        if kind not in KNOWN_KINDS:
            raise ServerError(f"invalid config entry kind: {kind}")  # Consul's RPC error: 500
        return kind

    async def config_list(self, request: web.Request) -> web.Response:
        kind = self._config_kind(request)
        r = self.rights(request)
        index = await block_on_index(
            request, self.agent.store, lambda: self.agent.config.index(kind)
        )
        entries = self._readable_entries(r, self.agent.config.listing(kind))
        return reply(filtered(request, entries), index=index, meta=True)

    async def config_get(self, request: web.Request) -> web.Response:
        kind, name = self._config_kind(request), request.match_info["name"]
        self.need(request, lambda r: self._config_can_read(r, kind, name))
        index = await block_on_index(
            request, self.agent.store, lambda: self.agent.config.index(kind)
        )
        try:
            entry = self.agent.config.get(kind, name)
        except NotFound as exc:
            # Consul sets the query meta before it answers 404 (edges e13, e30, e64).
            return web.Response(status=404, text=str(exc), headers=meta_headers(index))
        return reply(entry, index=index, meta=True)

    async def config_delete(self, request: web.Request) -> web.Response:
        kind, name = request.match_info["kind"], request.match_info["name"]
        self.need(request, lambda r: self._config_can_write(r, kind, name))
        return reply(self.agent.config.delete(kind, name, self._cas(request)))
