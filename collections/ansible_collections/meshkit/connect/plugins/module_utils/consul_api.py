# SPDX-License-Identifier: MPL-2.0
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


class ConnectionSettingsError(ValueError):
    """A connection setting that cannot be used; the message names the variable and the fix."""


# Consul's default agent address (api.DefaultConfig): the loopback address, not "localhost".
DEFAULT_ADDRESS = "127.0.0.1:8500"
# The most of a token file read (a token is 36 characters; the bound keeps memory bounded).
TOKEN_FILE_LIMIT = 64 * 1024
_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def parse_bool(value: str, name: str) -> bool:
    """Go's strconv.ParseBool, which Consul's CLI uses for its boolean variables.

    Anything else is an error naming the variable: a typo in CONSUL_HTTP_SSL must never
    quietly mean plain http.
    """
    if value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    raise ConnectionSettingsError(
        f"{name}={value!r} is not a boolean; use true or false "
        f"(accepted: {', '.join(_GO_TRUE + _GO_FALSE)})"
    )


@dataclass(frozen=True)
class Address:
    """CONSUL_HTTP_ADDR split as Consul's api.NewClient splits it."""

    scheme: str  # "https" when the address says so, else "" (CONSUL_HTTP_SSL decides)
    host: str
    port: int | None  # None: the address names none (the scheme's port, as in Consul)
    path_prefix: str = ""
    unix_socket: str | None = None


def split_address(address: str, source: str) -> Address:
    """``host:port``, ``http://``, ``https://`` (with an optional path prefix) or ``unix://``."""
    rest = address
    scheme = ""
    if "://" in address:
        proto, rest = address.split("://", 1)
        if proto == "unix":
            if not rest:
                raise ConnectionSettingsError(f"{source}={address!r} names no socket path")
            return Address("", "", None, "", rest)
        if proto not in ("http", "https"):
            raise ConnectionSettingsError(
                f"{source}={address!r}: unknown protocol scheme {proto!r}; "
                "use host:port, http://, https:// or unix://"
            )
        # http:// never downgrades a CONSUL_HTTP_SSL=true (the proxy's rule too).
        scheme = "https" if proto == "https" else ""
    hostport, _slash, prefix = rest.partition("/")
    prefix = prefix.rstrip("/")
    try:
        parts = urlsplit(f"//{hostport}")
        host, port = parts.hostname or "", parts.port
    except ValueError:
        host, port = "", None
    if not host:
        raise ConnectionSettingsError(
            f"{source}={address!r} names no usable host[:port]; write for example 127.0.0.1:8500"
        )
    return Address(scheme, host, port, f"/{prefix}" if prefix else "")


def _read_token_file(path: str, source: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(TOKEN_FILE_LIMIT + 1)
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise ConnectionSettingsError(
            f"cannot read the ACL token file {path!r} (from {source}): {reason}; "
            "fix the path or its permissions"
        ) from None
    if len(text) > TOKEN_FILE_LIMIT:
        raise ConnectionSettingsError(
            f"the ACL token file {path!r} (from {source}) is larger than "
            f"{TOKEN_FILE_LIMIT} bytes; it must hold only the token"
        )
    return text.strip()


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
    unix_socket: str | None = None  # CONSUL_HTTP_ADDR=unix:///path: requests go over it

    def describe(self) -> str:
        """Where requests go, for messages (no secrets)."""
        return f"unix://{self.unix_socket}" if self.unix_socket else self.base_url

    @classmethod
    def from_params(
        cls, params: dict[str, Any], environ: dict[str, str] | None = None
    ) -> Connection:
        """Options over Consul's environment over Consul's defaults, as its CLI resolves them.

        Token precedence is Consul's (api.NewClient, command/flags): the ``token`` option (the
        CLI's ``-token``), then the contents of ``CONSUL_HTTP_TOKEN_FILE``, then
        ``CONSUL_HTTP_TOKEN``; an empty token file leaves ``CONSUL_HTTP_TOKEN`` in force.
        Raises ``ConnectionSettingsError`` for a setting that cannot be used.
        """
        env = dict(os.environ if environ is None else environ)
        ssl = env.get("CONSUL_HTTP_SSL", "")
        env_scheme = "https" if ssl and parse_bool(ssl, "CONSUL_HTTP_SSL") else "http"
        ssl_verify = env.get("CONSUL_HTTP_SSL_VERIFY", "")
        env_verify = not ssl_verify or parse_bool(ssl_verify, "CONSUL_HTTP_SSL_VERIFY")
        addr = split_address(env.get("CONSUL_HTTP_ADDR") or DEFAULT_ADDRESS, "CONSUL_HTTP_ADDR")
        scheme = params.get("scheme") or addr.scheme or env_scheme
        verify = params.get("validate_certs")
        if verify is None:
            verify = env_verify
        unix_socket = None
        if params.get("host"):
            host, port, prefix = params["host"], params.get("port") or 8500, ""
        elif addr.unix_socket:
            host, port, prefix = "localhost", None, ""
            unix_socket = addr.unix_socket
        else:
            host, port, prefix = addr.host, params.get("port") or addr.port, addr.path_prefix
        netloc = f"[{host}]" if ":" in host and not host.startswith("[") else host
        if port is not None:
            netloc = f"{netloc}:{port}"
        token, source = _resolve_token(params.get("token") or None, env)
        return cls(
            base_url=f"{scheme}://{netloc}{prefix}",
            validate_certs=bool(verify),
            ca_path=params.get("ca_path") or env.get("CONSUL_CACERT") or None,
            client_cert=params.get("client_cert") or env.get("CONSUL_CLIENT_CERT") or None,
            client_key=params.get("client_key") or env.get("CONSUL_CLIENT_KEY") or None,
            token=token,
            timeout=int(params.get("timeout") or 10),
            token_source=source,
            unix_socket=unix_socket,
        )


def _resolve_token(option: str | None, env: dict[str, str]) -> tuple[str | None, str]:
    """Option, then CONSUL_HTTP_TOKEN_FILE's contents, then CONSUL_HTTP_TOKEN (Consul's order)."""
    if option:
        return option, TOKEN_FROM_OPTION
    path = env.get("CONSUL_HTTP_TOKEN_FILE")
    if path:
        from_file = _read_token_file(path, TOKEN_FROM_FILE)
        if from_file:
            return from_file, f"{TOKEN_FROM_FILE} ({path})"
    if env.get("CONSUL_HTTP_TOKEN"):
        return env["CONSUL_HTTP_TOKEN"], TOKEN_FROM_ENV
    return None, TOKEN_NONE


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
                unix_socket=self.conn.unix_socket,
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
                method, path, 0, f"cannot reach {self.conn.describe()}: {reason}"
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
        return parse_consul_version(str(config.get("Version", "")))


def parse_consul_version(text: str) -> tuple[int, ...]:
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
