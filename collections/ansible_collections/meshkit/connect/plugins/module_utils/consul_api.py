# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)
"""Talk to a Consul agent's HTTP API from a module, through ``ansible.module_utils.urls``.

Managed hosts need no extra Python package. TLS is verified by default, client certificates
are supported (community.general's Consul modules have none), and the token only ever travels
in the ``X-Consul-Token`` header.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode, urlsplit

from ansible.module_utils.urls import open_url

CONNECTION_ARGSPEC: dict[str, dict[str, Any]] = {
    "host": {"type": "str"},
    "port": {"type": "int"},
    "scheme": {"type": "str", "choices": ["http", "https"]},
    "validate_certs": {"type": "bool"},
    "ca_path": {"type": "path"},
    "client_cert": {"type": "path"},
    "client_key": {"type": "path", "no_log": False},
    "token": {"type": "str", "no_log": True},
    "timeout": {"type": "int", "default": 10},
}

_TRUE = ("1", "true", "yes", "on")


class ConsulError(Exception):
    """A request Consul refused or could not answer; ``status`` is 0 for transport errors."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"{method} {path}: {status or 'no response'}: {message}")


# Token sources, as the messages name them (never the token itself).
TOKEN_FROM_OPTION = "the module's token option"
TOKEN_FROM_ENV = "CONSUL_HTTP_TOKEN"
TOKEN_FROM_FILE = "CONSUL_HTTP_TOKEN_FILE"
TOKEN_NONE = (
    "none (no token option, CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE: Consul's anonymous token)"
)
ACL_NOT_FOUND = "ACL not found"


def access_denied(method: str, path: str, consul_text: str, token_source: str) -> ConsulError:
    """A 403: never "absent". The message says which token was used and what it lacks.

    Consul answers ``ACL not found`` for a token it does not know (wrong, deleted, expired)
    and ``Permission denied`` (sometimes with the missing right) for a known token without the
    right; both mean the task cannot know the object's state, so it must fail.
    """
    text = consul_text.strip() or "Permission denied"
    if ACL_NOT_FOUND in text:
        lacks = "is not a token this Consul knows (wrong, deleted or expired)"
    else:
        lacks = "lacks the ACL permission this request needs"
    return ConsulError(
        method,
        path,
        403,
        f"{text}: the ACL token from {token_source} {lacks}; give the task a token with the "
        "right policy (token option, CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE)",
    )


@dataclass(frozen=True)
class Connection:
    """Where and how to reach the agent, resolved once from options and environment."""

    base_url: str
    validate_certs: bool
    ca_path: str | None
    client_cert: str | None
    client_key: str | None
    token: str | None
    timeout: int
    token_source: str = TOKEN_NONE  # where ``token`` came from, for 403 messages

    @classmethod
    def from_params(
        cls, params: dict[str, Any], environ: dict[str, str] | None = None
    ) -> Connection:
        env = dict(os.environ if environ is None else environ)
        addr = env.get("CONSUL_HTTP_ADDR", "")
        addr_scheme, addr_host, addr_port = _split_addr(addr)
        scheme = params.get("scheme") or addr_scheme
        if not scheme:
            scheme = "https" if env.get("CONSUL_HTTP_SSL", "").lower() in _TRUE else "http"
        host = params.get("host") or addr_host or "localhost"
        port = params.get("port") or addr_port or 8500
        verify = params.get("validate_certs")
        if verify is None:
            verify = env.get("CONSUL_HTTP_SSL_VERIFY", "true").lower() in _TRUE
        token = params.get("token") or None
        source = TOKEN_FROM_OPTION
        if token is None and env.get("CONSUL_HTTP_TOKEN"):
            token, source = env["CONSUL_HTTP_TOKEN"], TOKEN_FROM_ENV
        if token is None and env.get("CONSUL_HTTP_TOKEN_FILE"):
            with open(env["CONSUL_HTTP_TOKEN_FILE"], encoding="utf-8") as handle:
                token = handle.read().strip() or None
            source = f"{TOKEN_FROM_FILE} ({env['CONSUL_HTTP_TOKEN_FILE']})"
        netloc = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return cls(
            base_url=f"{scheme}://{netloc}:{port}",
            validate_certs=bool(verify),
            ca_path=params.get("ca_path") or env.get("CONSUL_CACERT") or None,
            client_cert=params.get("client_cert") or env.get("CONSUL_CLIENT_CERT") or None,
            client_key=params.get("client_key") or env.get("CONSUL_CLIENT_KEY") or None,
            token=token,
            timeout=int(params.get("timeout") or 10),
            token_source=source if token else TOKEN_NONE,
        )


def _split_addr(addr: str) -> tuple[str, str, int | None]:
    if not addr:
        return "", "", None
    if "://" not in addr:
        addr = f"//{addr}"
    parts = urlsplit(addr)
    return parts.scheme, parts.hostname or "", parts.port


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    data: Any


class ConsulClient:
    """Small synchronous client: JSON in, JSON out, Consul's errors as ``ConsulError``."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._token_known: bool | None = None  # cached answer of /v1/acl/token/self

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        missing_ok: bool = False,
        acl_not_found_is_absent: bool = False,
    ) -> Response:
        """Send one request; a 404 returns ``Response(404, ..., None)`` when ``missing_ok``.

        A 403 is never absent: it raises, naming the token's source. The one exception is
        Consul 1.7's documented not-found answer of the ACL endpoints
        (``GET /v1/acl/token/<accessor>`` of a deleted token is ``403 ACL not found``): with
        ``acl_not_found_is_absent`` that answer is absent, but only once
        ``/v1/acl/token/self`` proves the request's own token is valid.

        A 404 with a token set is checked the same way (once per client): some endpoints
        (``/v1/agent/service/<id>``) answer 404 before they look at the token, and a task
        with a token Consul does not know must fail, not plan a ``create`` it cannot do.
        """
        url = f"{self.conn.base_url}{path}"
        if query:
            url += "?" + urlencode(query)
        headers = {"Accept": "application/json"}
        if self.conn.token:
            headers["X-Consul-Token"] = self.conn.token
        data = None
        if body is not None:
            data = json.dumps(body, sort_keys=True).encode()
            headers["Content-Type"] = "application/json"
        try:
            resp = open_url(
                url,
                method=method,
                data=data,
                headers=headers,
                validate_certs=self.conn.validate_certs,
                ca_path=self.conn.ca_path,
                client_cert=self.conn.client_cert,
                client_key=self.conn.client_key,
                timeout=self.conn.timeout,
                use_proxy=False,
                follow_redirects="none",
            )
            raw = resp.read()
            status = resp.status
            resp_headers = {k.lower(): v for k, v in resp.headers.items()}
        except HTTPError as err:
            text = err.read().decode("utf-8", "replace").strip() if err.fp else ""
            if err.code == 404 and missing_ok:
                if not self._token_valid():
                    source = self.conn.token_source
                    raise access_denied(method, path, ACL_NOT_FOUND, source) from None
                return Response(404, {}, None)
            if err.code == 403:
                if acl_not_found_is_absent and ACL_NOT_FOUND in text and self._token_valid():
                    return Response(404, {}, None)
                raise access_denied(method, path, text, self.conn.token_source) from None
            raise ConsulError(method, path, err.code, text or str(err.reason)) from None
        except (URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ConsulError(
                method, path, 0, f"cannot reach {self.conn.base_url}: {reason}"
            ) from err
        return Response(status, resp_headers, _decode(raw))

    def _token_valid(self) -> bool:
        """Whether Consul knows the request's token; no token (anonymous) always is.

        Only ``403 ACL not found`` from ``/v1/acl/token/self`` says no: ACLs off (401/403
        "ACL support disabled") or a token without ``acl:read`` still means a known token.
        """
        if not self.conn.token:
            return True
        if self._token_known is None:
            try:
                self.request("GET", "/v1/acl/token/self")
                self._token_known = True
            except ConsulError as err:
                self._token_known = not (err.status == 403 and ACL_NOT_FOUND in str(err))
        return self._token_known

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw).data

    def put(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("PUT", path, body=body, **kw).data

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, body=body, **kw).data

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw).data

    def version(self) -> tuple[int, ...]:
        """The agent's Consul version from ``/v1/agent/self`` (e.g. ``(1, 7, 14)``)."""
        config = (self.get("/v1/agent/self") or {}).get("Config") or {}
        return parse_version(str(config.get("Version", "")))


def parse_version(text: str) -> tuple[int, ...]:
    head = text.lstrip("v").split("-", 1)[0].split("+", 1)[0]
    out: list[int] = []
    for part in head.split("."):
        if not part.isdigit():
            break
        out.append(int(part))
    return tuple(out)


def segment(value: str) -> str:
    """One URL path segment (service IDs, query IDs, entry names)."""
    return quote(value, safe="")


def _decode(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
