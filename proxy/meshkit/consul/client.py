# SPDX-License-Identifier: MPL-2.0
"""An async Consul HTTP client that talks to the agent the way Consul's own Go client does.

The token only ever travels in the `X-Consul-Token` header (a `?token=` parameter would land in
access logs), and nothing here logs a token, a header or a response body.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from meshkit.consul.http import Answer, Endpoint, HTTPFailure, Pool, TooLarge, encode_request
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
    """One pool of keep-alive connections to the local agent. Use as an async context manager."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ssl = build_ssl_context(settings)
        # A path written after a scheme-less address ("host:port/prefix") is a path prefix, as
        # it was when the address was pasted into a URL.
        address, _, stray_prefix = settings.host.partition("/")
        self._path_prefix = ("/" + stray_prefix if stray_prefix else "") + settings.path_prefix
        self._headers = _static_headers(settings, address)
        self._pool = Pool(
            Endpoint(
                address=address,
                default_port=443 if settings.scheme == "https" else 80,
                unix_path=settings.unix_path,
                ssl=self._ssl,
                server_name=settings.tls_server_name,
            ),
            connect_timeout=CONNECT_TIMEOUT_S,
        )

    async def __aenter__(self) -> ConsulClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every connection; the client stays usable (a later request opens a new one)."""
        await self._pool.close()

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
        # Percent-encode what a URL path cannot hold, keeping escapes already there; a query
        # written into `path` stays in front of `params`.
        path_only, _, inline_query = path.partition("?")
        target = quote(self._path_prefix + path_only, safe="/:@!$&'()*+,;=-._~%")
        query_text = "&".join(q for q in (inline_query, urlencode(query, quote_via=quote)) if q)
        if query_text:
            target += "?" + query_text
        headers = self._headers
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers = [*headers, ("Content-Type", "application/json")]
        try:
            wire = encode_request(method, target, headers, data)
            answer = await self._pool.request(wire, timeout)
        except TooLarge as exc:
            raise ConsulError(
                f"{method} {path}: the answer of the Consul agent at {self.settings.describe()} "
                f"is too large: {exc}"
            ) from None
        except (TimeoutError, HTTPFailure, OSError) as exc:
            reason = type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"
            raise ConsulUnavailable(
                f"{method} {path}: Consul agent at {self.settings.describe()} unreachable "
                f"({reason})"
            ) from None
        return _response(method, path, answer, allow_404)

    async def get(self, path: str, **kwargs: Any) -> Response:
        return await self.request("GET", path, **kwargs)

    async def put(self, path: str, body: Any = None, **kwargs: Any) -> Response:
        return await self.request("PUT", path, body=body, **kwargs)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> Response:
        return await self.request("POST", path, body=body, **kwargs)


def _static_headers(settings: Settings, address: str) -> list[tuple[str, str]]:
    """What every request carries. A value with a line break would end the header early (and
    let the rest be read as another header), so it is refused here, naming only its source."""
    headers = [
        ("Host", "consul" if settings.unix_path else address),
        ("User-Agent", "meshkit-proxy"),
    ]
    if settings.token:
        headers.append(("X-Consul-Token", settings.token))
    if settings.basic_auth:
        pair = ":".join(settings.basic_auth).encode()
        headers.append(("Authorization", "Basic " + base64.b64encode(pair).decode()))
    for name, value in headers:
        if any(c in value for c in "\r\n\0"):
            source = {
                "Host": "the agent address",
                "X-Consul-Token": f"the ACL token ({settings.token_source})",
                "Authorization": "CONSUL_HTTP_AUTH",
            }.get(name, name)
            raise SettingsError(f"{source} contains a line break or NUL; it cannot be sent")
    return headers


def _response(method: str, path: str, answer: Answer, allow_404: bool) -> Response:
    status, raw = answer.status, answer.body
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
    known = answer.header("X-Consul-KnownLeader")
    return Response(
        status=status,
        body=body_out,
        index=_header_int(answer.header("X-Consul-Index")),
        content_hash=answer.header("X-Consul-ContentHash"),
        known_leader=None if known is None else known == "true",
        cache=answer.header("X-Cache"),
    )
