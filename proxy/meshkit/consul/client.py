# SPDX-License-Identifier: MPL-2.0
"""An async Consul HTTP client that talks to the agent the way Consul's own Go client does.

The token only ever travels in the `X-Consul-Token` header (a `?token=` parameter would land in
access logs), and nothing here logs a token, a header or a response body.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from meshkit.consul.settings import Settings, SettingsError

log = logging.getLogger("meshkit.consul.client")

Params = Mapping[str, str | int] | list[tuple[str, str | int]]

# Extra time we allow beyond `wait` (plus the agent's jitter of up to wait/16) before we call a
# blocking request hung.
BLOCKING_GRACE_S = 10.0
CONNECT_TIMEOUT_S = 5.0
DEFAULT_TIMEOUT_S = 15.0


class ConsulError(Exception):
    """Any failure talking to Consul."""


class ConsulUnavailable(ConsulError):
    """The agent could not be reached or did not answer in time (transient by nature)."""


class ConsulHTTPError(ConsulError):
    """The agent answered with a non-2xx status."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        self.method, self.path, self.status, self.message = method, path, status, message
        super().__init__(f"{method} {path}: HTTP {status}: {message}")


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: Any
    index: int | None
    content_hash: str | None
    known_leader: bool | None
    cache: str | None


def build_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS to the agent: CA file/dir, optional client cert, SSL_VERIFY=false honoured."""
    if settings.scheme != "https":
        return None
    ctx = ssl.create_default_context(cafile=settings.ca_file, capath=settings.ca_path)
    if not settings.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if settings.client_cert and settings.client_key:
        try:
            ctx.load_cert_chain(settings.client_cert, settings.client_key)
        except (OSError, ssl.SSLError) as exc:
            raise SettingsError(
                f"cannot load the Consul client certificate {settings.client_cert!r} / key "
                f"{settings.client_key!r}: {exc}"
            ) from exc
    return ctx


def _header_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


class ConsulClient:
    """One pooled HTTP session to the local agent. Use as an async context manager."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ssl = build_ssl_context(settings)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ConsulClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector
            if self.settings.unix_path:
                connector = aiohttp.UnixConnector(path=self.settings.unix_path)
            else:
                connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl else False, limit=0)
            headers = {"User-Agent": "meshkit-proxy"}
            if self.settings.token:
                headers["X-Consul-Token"] = self.settings.token
            auth = None
            if self.settings.basic_auth:
                auth = aiohttp.BasicAuth(*self.settings.basic_auth)
            self._session = aiohttp.ClientSession(
                connector=connector, headers=headers, auth=auth, trust_env=False
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: Any = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        use_dc: bool = False,
        use_stale: bool = False,
        allow_404: bool = False,
    ) -> Response:
        """One HTTP call. Raises ConsulUnavailable or ConsulHTTPError; never logs secrets."""
        query: list[tuple[str, str]] = []
        if params is not None:
            items = params.items() if isinstance(params, Mapping) else params
            query = [(k, str(v)) for k, v in items]
        if use_dc and self.settings.datacenter and not any(k == "dc" for k, _ in query):
            query.append(("dc", self.settings.datacenter))
        if use_stale and self.settings.stale and not any(k == "stale" for k, _ in query):
            query.append(("stale", ""))
        url = self.settings.base_url + path
        data = None if body is None else json.dumps(body)
        kwargs: dict[str, Any] = {}
        if self._ssl is not None and self.settings.tls_server_name:
            kwargs["server_hostname"] = self.settings.tls_server_name
        try:
            session = self._get_session()
            async with session.request(
                method,
                url,
                params=query,
                data=data,
                timeout=aiohttp.ClientTimeout(total=timeout, connect=CONNECT_TIMEOUT_S),
                **kwargs,
            ) as resp:
                raw = await resp.read()
                status = resp.status
                hdr = resp.headers
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            reason = type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"
            raise ConsulUnavailable(
                f"{method} {path}: Consul agent at {self.settings.describe()} unreachable "
                f"({reason})"
            ) from None
        if status == 404 and allow_404:
            body_out: Any = None
        elif status >= 300:
            text = raw.decode("utf-8", "replace").strip()[:300]
            raise ConsulHTTPError(method, path, status, text or "(empty body)")
        else:
            body_out = None
            if raw.strip():
                try:
                    body_out = json.loads(raw)
                except ValueError:
                    body_out = raw.decode("utf-8", "replace")
        log.debug("%s %s -> %d", method, path, status)
        known = hdr.get("X-Consul-KnownLeader")
        return Response(
            status=status,
            body=body_out,
            index=_header_int(hdr.get("X-Consul-Index")),
            content_hash=hdr.get("X-Consul-ContentHash"),
            known_leader=None if known is None else known == "true",
            cache=hdr.get("X-Cache"),
        )

    async def get(self, path: str, **kwargs: Any) -> Response:
        return await self.request("GET", path, **kwargs)

    async def put(self, path: str, body: Any = None, **kwargs: Any) -> Response:
        return await self.request("PUT", path, body=body, **kwargs)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> Response:
        return await self.request("POST", path, body=body, **kwargs)
