# SPDX-License-Identifier: MPL-2.0
"""How to reach the local Consul agent, resolved exactly as Consul's `api.DefaultConfig()` does.

Operators switching from `consul connect proxy` keep their environment and flags, so the
address forms, the token precedence and the TLS knobs must mean what they mean to Consul's
own CLI (`api.DefaultConfig` and `NewClient` in hashicorp/consul's api/api.go).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Re-exported: `meshkit.native.Service(consul=HTTPFlags(...))` callers import it from here.
from meshkit.flags import HTTPFlags as HTTPFlags

DEFAULT_ADDRESS = "127.0.0.1:8500"
_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")


class SettingsError(ValueError):
    """A connection setting that cannot be used; the message names the source and the fix."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Resolved connection settings. `token` is a secret: it is excluded from repr."""

    scheme: str  # "http" | "https"
    host: str  # host:port for TCP; empty for unix sockets
    unix_path: str | None = None
    path_prefix: str = ""
    token: str = field(default="", repr=False)
    token_source: str = ""  # where the token came from, for error messages (never the value)
    ca_file: str | None = None
    ca_path: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    tls_server_name: str | None = None
    verify: bool = True
    datacenter: str | None = None
    stale: bool = False
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        host = "consul" if self.unix_path else self.host
        return f"{self.scheme}://{host}{self.path_prefix}"

    def describe(self) -> str:
        """Where we connect, for logs and errors (no secrets)."""
        if self.unix_path:
            return f"unix://{self.unix_path}"
        return f"{self.scheme}://{self.host}{self.path_prefix}"


def parse_bool(value: str, name: str) -> bool:
    """Go's strconv.ParseBool, which is what Consul uses for its boolean variables.

    The modules' resolver (module_utils/consul_api.py) parses the same way, with the same
    message: a typo never quietly means plain http.
    """
    if value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    raise SettingsError(
        f"{name}={value!r} is not a boolean; use true or false "
        f"(accepted: {', '.join(_GO_TRUE + _GO_FALSE)})"
    )


def _read_token_file(path: str, source: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise SettingsError(
            f"cannot read the ACL token file {path!r} (from {source}): {exc.strerror}; "
            "fix the path or its permissions"
        ) from exc


def resolve(flags: HTTPFlags | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Combine flags over the environment over Consul's defaults, then split the address.

    Token precedence is `-token-file` > `-token` > `CONSUL_HTTP_TOKEN_FILE` >
    `CONSUL_HTTP_TOKEN` (the documented CLI order); a token file's content is trimmed and an
    empty file leaves the lower-precedence token in force, as in Consul.
    """
    flags = flags or HTTPFlags()
    env = os.environ if env is None else env

    def pick(flag: str | None, var: str) -> str | None:
        if flag is not None and flag != "":
            return flag
        value = env.get(var, "")
        return value or None

    address = pick(flags.http_addr, "CONSUL_HTTP_ADDR") or DEFAULT_ADDRESS
    addr_source = "-http-addr" if flags.http_addr else "CONSUL_HTTP_ADDR"

    scheme = "http"
    ssl = env.get("CONSUL_HTTP_SSL", "")
    if ssl and parse_bool(ssl, "CONSUL_HTTP_SSL"):
        scheme = "https"

    verify = True
    ssl_verify = env.get("CONSUL_HTTP_SSL_VERIFY", "")
    if ssl_verify and not parse_bool(ssl_verify, "CONSUL_HTTP_SSL_VERIFY"):
        verify = False

    unix_path: str | None = None
    path_prefix = ""
    host = address
    if "://" in address:
        proto, rest = address.split("://", 1)
        if proto == "http":
            pass  # never downgrade when CONSUL_HTTP_SSL asked for TLS
        elif proto == "https":
            scheme = "https"
        elif proto == "unix":
            if not rest:
                raise SettingsError(f"{addr_source}={address!r} names no socket path")
            unix_path = rest
        else:
            raise SettingsError(
                f"{addr_source}={address!r}: unknown protocol scheme {proto!r}; "
                "use host:port, http://, https:// or unix://"
            )
        host = rest
        if proto in ("http", "https") and "/" in rest:
            host, prefix = rest.split("/", 1)
            path_prefix = "/" + prefix.rstrip("/") if prefix.rstrip("/") else ""
    if unix_path is None and not host:
        raise SettingsError(f"{addr_source}={address!r} names no host")
    if unix_path is not None:
        host = ""

    token, token_source = "", ""
    if flags.token_file:
        token, token_source = _read_token_file(flags.token_file, "-token-file"), "-token-file"
    if not token and flags.token:
        token, token_source = flags.token, "-token"
    if not token and not flags.token and env.get("CONSUL_HTTP_TOKEN_FILE"):
        token = _read_token_file(env["CONSUL_HTTP_TOKEN_FILE"], "CONSUL_HTTP_TOKEN_FILE")
        token_source = "CONSUL_HTTP_TOKEN_FILE"
    if not token and not flags.token and env.get("CONSUL_HTTP_TOKEN"):
        token, token_source = env["CONSUL_HTTP_TOKEN"], "CONSUL_HTTP_TOKEN"
    if not token:
        token_source = ""  # an empty token file sent nothing: say "no token", not the file

    basic_auth: tuple[str, str] | None = None
    if auth := env.get("CONSUL_HTTP_AUTH"):
        user, _, password = auth.partition(":")
        basic_auth = (user, password)

    client_cert = pick(flags.client_cert, "CONSUL_CLIENT_CERT")
    client_key = pick(flags.client_key, "CONSUL_CLIENT_KEY")
    if bool(client_cert) != bool(client_key):
        raise SettingsError(
            "a client certificate for the Consul agent needs both -client-cert "
            "(CONSUL_CLIENT_CERT) and -client-key (CONSUL_CLIENT_KEY); one is missing"
        )
    return Settings(
        scheme=scheme,
        host=host,
        unix_path=unix_path,
        path_prefix=path_prefix,
        token=token,
        token_source=token_source,
        ca_file=pick(flags.ca_file, "CONSUL_CACERT"),
        ca_path=pick(flags.ca_path, "CONSUL_CAPATH"),
        client_cert=client_cert,
        client_key=client_key,
        tls_server_name=pick(flags.tls_server_name, "CONSUL_TLS_SERVER_NAME"),
        verify=verify,
        datacenter=flags.datacenter or None,
        stale=bool(flags.stale),
        basic_auth=basic_auth,
    )
