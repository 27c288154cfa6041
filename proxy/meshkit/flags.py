# SPDX-License-Identifier: MPL-2.0
"""`meshkit-proxy` command line: the flags of `consul connect proxy`, plus ours.

Go's flag package conventions are kept so operators can swap binaries: `-flag` and `--flag`,
`-flag=value` and `-flag value`, booleans as `-flag` or `-flag=false`. `CONNECT_PROXY_ID` and
`CONNECT_SIDECAR_FOR` default the identity flags; the `CONSUL_*` variables are left to
`meshkit.consul.settings` (fields here hold flags only). The result is a typed
`CommandLine`; every problem is a `FlagError` (exit 2).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Literal

from meshkit import bounded
from meshkit.config import parse_hostport
from meshkit.logs import parse_level
from meshkit.resolver import PREPARED_QUERY, SERVICE


class FlagError(ValueError):
    pass


# `-workers` / the static file's `workers:` (static mode's worker processes, workers.py)
AUTO: Literal["auto"] = "auto"
WorkersSetting = int | Literal["auto"]
MAX_WORKERS = 64
WORKERS_HINT = "give a number of processes from 1 to 64, or auto (one per usable CPU, at most 4)"


def parse_setting(value: object) -> WorkersSetting:
    """`auto`, or a whole number 1-64 (an int, or its text); ValueError says what is wrong."""
    shown = repr(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == AUTO:
            return AUTO
        if not (text.isascii() and text.isdigit()):
            raise ValueError(f"{shown} is not a positive whole number; {WORKERS_HINT}")
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{shown} is not a positive whole number; {WORKERS_HINT}")
    if value > MAX_WORKERS:
        raise ValueError(f"{shown} is more than {MAX_WORKERS} processes; {WORKERS_HINT}")
    return value


@dataclass(frozen=True, slots=True)
class HTTPFlags:
    """The HTTP client flags of Consul's CLI; None means "not given on the command line"."""

    http_addr: str | None = None
    token: str | None = field(default=None, repr=False)  # a secret: never in a repr or log
    token_file: str | None = None
    ca_file: str | None = None
    ca_path: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    tls_server_name: str | None = None
    datacenter: str | None = None
    stale: bool | None = None


@dataclass(frozen=True)
class UpstreamFlag:
    name: str
    dst_type: str  # "service" or "prepared_query"
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> UpstreamFlag:
        """`NAME[.service|.query]:[ADDR:]PORT`, as `consul connect proxy -upstream` reads it."""
        name, sep, rest = text.partition(":")
        if not sep or not name or not rest:
            raise FlagError(f"-upstream {text!r}: expected NAME[.service|.query]:[ADDR:]PORT")
        dst_type = SERVICE
        if name.endswith(".query"):
            name, dst_type = name[: -len(".query")], PREPARED_QUERY
        elif name.endswith(".service"):
            name = name[: -len(".service")]
        if not name:
            raise FlagError(f"-upstream {text!r}: empty destination name")
        try:
            host, port = parse_hostport(rest, default_host="127.0.0.1")
        except ValueError as exc:
            raise FlagError(f"-upstream {text!r}: {exc}") from None
        if port == 0:
            raise FlagError(f"-upstream {text!r}: the local port must not be 0")
        return cls(name, dst_type, host, port)


@dataclass(frozen=True)
class CommandLine:
    # consul connect proxy
    service: str | None = None
    listen: tuple[str, int] | None = None
    service_addr: tuple[str, int] | None = None
    upstreams: tuple[UpstreamFlag, ...] = ()
    proxy_id: str | None = None
    sidecar_for: str | None = None
    register: bool = False
    register_id: str | None = None
    log_level: str = "info"
    log_json: bool = False
    bind_address: str | None = None
    pprof_addr: str | None = None
    # Consul HTTP client flags, layered over the CONSUL_* environment by consul.settings.resolve
    http: HTTPFlags = field(default_factory=HTTPFlags)
    # meshkit's own
    config: str | None = None
    admin_bind: tuple[str, int] | None = None
    authz: str | None = None  # "local" (intentions cache) or "agent" (authorize endpoint)
    allow_non_loopback_service: bool = False
    trust_domain: str | None = None  # static mode: the peers' trust domain (else the roots')
    # None: not on the command line (static mode: the file's `workers:`, else auto)
    workers: WorkersSetting | None = None
    event_loop: str = "auto"  # auto (uvloop when importable), uvloop, asyncio
    tls_engine: str = "auto"  # auto (openssl when importable), openssl, stdlib
    help: bool = False
    version: bool = False  # -version: print the version and exit, as `consul version` does
    # the -config file's top-level `mode:` (static unless it says consul), read at parse time
    config_mode: str = "static"

    @property
    def static(self) -> bool:
        return self.config is not None and self.config_mode == "static"

    @property
    def consul_file(self) -> str | None:
        """The -config file when it drives Consul mode (`mode: consul`)."""
        return self.config if self.config_mode == "consul" else None


# flag name -> (field, kind); kind: str, bool, hostport, upstream, workers
_FLAGS: dict[str, tuple[str, str]] = {
    "service": ("service", "str"),
    "listen": ("listen", "hostport"),
    "service-addr": ("service_addr", "hostport"),
    "upstream": ("upstreams", "upstream"),
    "proxy-id": ("proxy_id", "str"),
    "sidecar-for": ("sidecar_for", "str"),
    "register": ("register", "bool"),
    "register-id": ("register_id", "str"),
    "log-level": ("log_level", "level"),
    "log-json": ("log_json", "bool"),
    "bind-address": ("bind_address", "str"),
    "pprof-addr": ("pprof_addr", "str"),
    "http-addr": ("http_addr", "str"),
    "token": ("token", "str"),
    "token-file": ("token_file", "str"),
    "ca-file": ("ca_file", "str"),
    "ca-path": ("ca_path", "str"),
    "client-cert": ("client_cert", "str"),
    "client-key": ("client_key", "str"),
    "tls-server-name": ("tls_server_name", "str"),
    "datacenter": ("datacenter", "str"),
    "stale": ("stale", "bool"),
    "config": ("config", "str"),
    "admin-bind": ("admin_bind", "hostport"),
    "authz": ("authz", "choice:local,agent"),
    "allow-non-loopback-service": ("allow_non_loopback_service", "bool"),
    "trust-domain": ("trust_domain", "str"),
    "workers": ("workers", "workers"),
    "event-loop": ("event_loop", "choice:auto,uvloop,asyncio"),
    "tls-engine": ("tls_engine", "choice:auto,openssl,stdlib"),
    "help": ("help", "bool"),
    "h": ("help", "bool"),
    "version": ("version", "bool"),
}

_HTTP_FIELDS = frozenset(f.name for f in fields(HTTPFlags))

# Only the proxy's identity comes from the environment here. The CONSUL_* connection variables
# are read by meshkit.consul.settings.resolve, which must know a flag from a variable to apply
# Consul's precedence (-token-file > -token > CONSUL_HTTP_TOKEN_FILE > CONSUL_HTTP_TOKEN).
_ENV: dict[str, str] = {
    "proxy_id": "CONNECT_PROXY_ID",
    "sidecar_for": "CONNECT_SIDECAR_FOR",
}

USAGE = """usage: meshkit-proxy [flags]

Static mode (certificates and targets from files):
  meshkit-proxy -config FILE [-service NAME] [-listen HOST:PORT -service-addr HOST:PORT]
                [-upstream NAME[.service|.query]:[ADDR:]PORT ...] [-admin-bind 127.0.0.1:PORT]
Consul mode (everything from the local agent):
  meshkit-proxy -proxy-id ID | -sidecar-for SERVICE_ID | -service NAME [-register] ...
  meshkit-proxy -config FILE   (a file with `mode: consul`: service, listeners, upstreams)

Flags (also as --flag, -flag=value):
  -service NAME            service this proxy represents
  -listen HOST:PORT        public (mTLS) listener
  -service-addr HOST:PORT  local application (must be loopback)
  -upstream SPEC           NAME[.service|.query]:[ADDR:]PORT, repeatable
  -proxy-id ID, -sidecar-for ID, -register, -register-id ID
  -log-level LEVEL         trace, debug, info (default), warn, error
  -log-json                JSON log lines
  -http-addr, -token, -token-file, -ca-file, -ca-path, -client-cert, -client-key,
  -tls-server-name, -datacenter, -stale   Consul HTTP client (Consul mode)
  -config FILE             static-mode YAML, or Consul mode's with `mode: consul` (docs/proxy.md)
  -admin-bind HOST:PORT    loopback admin listener (/metrics, /ready, /health)
  -authz local|agent       Consul mode: intentions cache or the agent's authorize call
  -allow-non-loopback-service  permit a non-loopback -service-addr (traffic bypasses the mesh)
  -trust-domain DOMAIN     static mode: the trust domain inbound peers must name
                           (default: the domains in the CA roots' spiffe:// URI SANs)
  -workers N|auto          static mode: processes sharing the listening ports (SO_REUSEPORT);
                           auto (default) = usable CPUs, cgroup quota, at most 4; 1 to 64
  -event-loop auto|uvloop|asyncio
  -tls-engine auto|openssl|stdlib  pyOpenSSL (the cryptography wheel's OpenSSL) or Python's ssl
  -version                 print the version and exit
"""


def parse(argv: Sequence[str], env: Mapping[str, str] | None = None) -> CommandLine:
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    http: dict[str, object] = {}
    upstreams: list[UpstreamFlag] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            if i < len(args):
                raise FlagError(f"unexpected argument {args[i]!r}")
            break
        if not arg.startswith("-") or arg in ("-", "---"):
            raise FlagError(f"unexpected argument {arg!r} (flags start with -)")
        body = arg[2:] if arg.startswith("--") else arg[1:]
        name, has_value, value = body.partition("=")
        spec = _FLAGS.get(name)
        if spec is None:
            raise FlagError(f"flag provided but not defined: -{name}")
        target, kind = spec
        if kind == "bool":
            if has_value:
                lowered = value.lower()
                if lowered not in ("true", "false", "1", "0", "t", "f"):
                    raise FlagError(f"-{name}: invalid boolean value {value!r}")
                flag = lowered in ("true", "1", "t")
            else:
                flag = True
            (http if target in _HTTP_FIELDS else values)[target] = flag
            continue
        if not has_value:
            if i >= len(args):
                raise FlagError(f"flag needs an argument: -{name}")
            value = args[i]
            i += 1
        values_or_err = _convert(name, kind, value)
        if kind == "upstream":
            assert isinstance(values_or_err, UpstreamFlag)
            upstreams.append(values_or_err)
        elif target in _HTTP_FIELDS:
            # An empty flag value counts as not given, as in Consul's CLI.
            if values_or_err:
                http[target] = values_or_err
        else:
            values[target] = values_or_err
    for fld, var in _ENV.items():
        if fld not in values and env.get(var):
            values[fld] = env[var]
    if isinstance(values.get("config"), str):
        values["config_mode"] = config_file_mode(str(values["config"]))
    known = {f.name for f in fields(CommandLine)}
    assert set(values) <= known
    cmd = CommandLine(
        upstreams=tuple(upstreams),
        http=HTTPFlags(**http),  # type: ignore[arg-type]
        **values,  # type: ignore[arg-type]
    )
    if not cmd.help and not cmd.version:
        _check(cmd)
    return cmd


def config_file_mode(path: str) -> str:
    """`consul` when the file's top level says `mode: consul`, else `static`.

    Only the switch is read here; an unreadable or invalid file is left to the loader of the
    mode it falls into (static), which reports every problem with the file's name.
    """
    try:
        raw = bounded.load_yaml(path)
    except bounded.FileError:
        return "static"
    if isinstance(raw, dict) and raw.get("mode") == "consul":
        return "consul"
    return "static"


def _convert(name: str, kind: str, value: str) -> object:
    if kind == "str":
        if value == "" and name in ("service", "config", "proxy-id", "sidecar-for"):
            raise FlagError(f"-{name}: empty value")
        return value
    if kind == "hostport":
        try:
            return parse_hostport(value)
        except ValueError as exc:
            raise FlagError(f"-{name}: {exc}") from None
    if kind == "upstream":
        return UpstreamFlag.parse(value)
    if kind == "workers":
        try:
            return parse_setting(value)
        except ValueError as exc:
            raise FlagError(f"-{name}: {exc}") from None
    if kind == "level":
        try:
            parse_level(value)
        except ValueError as exc:
            raise FlagError(f"-{name}: {exc}") from None
        return value.lower()
    if kind.startswith("choice:"):
        choices = kind.split(":", 1)[1].split(",")
        if value not in choices:
            raise FlagError(f"-{name}: {value!r} is not one of {', '.join(choices)}")
        return value
    raise AssertionError(kind)


def _check(cmd: CommandLine) -> None:
    if cmd.register and not (cmd.service and cmd.listen):
        raise FlagError("-register requires -service and -listen")
    if cmd.static:
        if cmd.proxy_id or cmd.sidecar_for:
            raise FlagError("-config (static mode) cannot be combined with -proxy-id/-sidecar-for")
        return
    if cmd.trust_domain:
        raise FlagError(
            "-trust-domain is for static mode; in Consul mode the trust domain is the one "
            "Consul's CA roots name (TrustDomain)"
        )
    if cmd.consul_file:
        given = [
            flag
            for flag, used in (
                ("-service", cmd.service),
                ("-listen", cmd.listen),
                ("-service-addr", cmd.service_addr),
                ("-upstream", cmd.upstreams),
                ("-proxy-id", cmd.proxy_id),
                ("-sidecar-for", cmd.sidecar_for),
                ("-register", cmd.register),
                ("-bind-address", cmd.bind_address),
            )
            if used
        ]
        if given:
            raise FlagError(
                f"-config {cmd.config} (mode: consul) says who this proxy is and what it "
                f"listens on; drop {', '.join(given)} or put it in the file"
            )
        return
    if cmd.listen and not (cmd.service and cmd.service_addr):
        raise FlagError("-listen requires -service and -service-addr")
    if not (cmd.proxy_id or cmd.sidecar_for or cmd.service):
        raise FlagError("-service or -proxy-id must be specified (or -config FILE for static mode)")
