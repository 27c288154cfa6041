# SPDX-License-Identifier: MPL-2.0
"""Request bodies and config files decoded the way Consul decodes them.

Consul's HTTP API uses Go's `encoding/json` with unknown fields disallowed: keys match the
field name in any letter case, plus a fixed set of snake_case aliases. Config files use
snake_case keys (any letter case) and report leftovers as `invalid config key`. One schema
drives both so the two spellings cannot drift apart; the result is always CamelCase.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["api", "file"]


class DecodeError(ValueError):
    """Bad input; the message is what the client sees after Consul's prefix."""


@dataclass(frozen=True)
class F:
    """One field: canonical CamelCase name, kind, nested schema, API aliases, file key."""

    name: str
    kind: str  # str int bool dur strlist strmap any obj objlist objmap
    sub: Schema | None = None
    aliases: tuple[str, ...] = ()
    file_key: str | None = None


@dataclass(frozen=True)
class Schema:
    name: str
    fields: tuple[F, ...]
    _by_api: dict[str, F] = field(default_factory=dict, compare=False, repr=False)
    _by_file: dict[str, F] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for f in self.fields:
            self._by_api[f.name.lower()] = f
            for alias in f.aliases:
                self._by_api[alias.lower()] = f
            self._by_file[(f.file_key or snake(f.name)).lower()] = f


def snake(name: str) -> str:
    """`DestinationServiceID` -> `destination_service_id`, `TLSSkipVerify` -> `tls_skip_verify`."""
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.lower()


_GO_TYPES = {
    "str": "string",
    "int": "int",
    "bool": "bool",
    "dur": "time.Duration",
    "strlist": "[]string",
    "strmap": "map[string]string",
    "any": "map[string]interface {}",
    "obj": "struct",
    "objlist": "[]struct",
    "objmap": "map[string]struct",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_error(mode: Mode, path: str, f: F, value: Any) -> DecodeError:
    if mode == "api":
        return DecodeError(
            f"json: cannot unmarshal {_json_type(value)} into Go struct field {path} "
            f"of type {_GO_TYPES.get(f.kind, f.kind)}"
        )
    return DecodeError(
        f"{path}: expected type '{_GO_TYPES.get(f.kind, f.kind)}', got {_json_type(value)}"
    )


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go duration string (`10s`, `1h30m`, `300000ms`) in seconds."""
    text = text.strip()
    if text in ("", "0"):
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise DecodeError(f"time: invalid duration {text!r}")
    return total


def format_duration(seconds: float) -> str:
    """Go's spelling of a duration (`10s`, `1m30s`, `72h0m0s`)."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


def _value(mode: Mode, path: str, f: F, value: Any) -> Any:
    kind = f.kind
    if value is None:
        return None
    if kind == "str":
        if not isinstance(value, str):
            raise _type_error(mode, path, f, value)
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            if mode == "file" and isinstance(value, str) and value.isdigit():
                return int(value)
            raise _type_error(mode, path, f, value)
        return int(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise _type_error(mode, path, f, value)
        return value
    if kind == "dur":
        if isinstance(value, bool):
            raise _type_error(mode, path, f, value)
        if isinstance(value, (int, float)):
            return float(value) / 1e9
        if isinstance(value, str):
            return parse_duration(value)
        raise _type_error(mode, path, f, value)
    if kind == "strlist":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _type_error(mode, path, f, value)
        return list(value)
    if kind == "strmap":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise _type_error(mode, path, f, value)
        return dict(value)
    if kind == "any":
        if not isinstance(value, dict):
            raise _type_error(mode, path, f, value)
        return value
    assert f.sub is not None
    if kind == "obj":
        if mode == "file" and isinstance(value, list) and len(value) == 1:
            value = value[0]  # HCL-style one-element block lists
        if not isinstance(value, dict):
            raise _type_error(mode, path, f, value)
        return decode(value, f.sub, mode, path)
    if kind == "objlist":
        if mode == "file" and isinstance(value, dict):
            value = [value]
        if not isinstance(value, list):
            raise _type_error(mode, path, f, value)
        return [
            decode(_need_obj(mode, f"{path}[{i}]", f, v), f.sub, mode, f"{path}[{i}]")
            for i, v in enumerate(value)
        ]
    if kind == "objmap":
        if not isinstance(value, dict):
            raise _type_error(mode, path, f, value)
        return {
            k: decode(_need_obj(mode, f"{path}.{k}", f, v), f.sub, mode, f"{path}.{k}")
            for k, v in value.items()
        }
    raise AssertionError(kind)


def _need_obj(mode: Mode, path: str, f: F, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _type_error(mode, path, f, value)
    return value


def decode(data: Mapping[str, Any], schema: Schema, mode: Mode, path: str = "") -> dict[str, Any]:
    """Validate `data` against `schema`; return it with canonical CamelCase keys."""
    out: dict[str, Any] = {}
    index = schema._by_api if mode == "api" else schema._by_file
    for key, value in data.items():
        f = index.get(key.lower())
        where = f"{path}.{key}" if path else key
        if f is None:
            if mode == "api":
                raise DecodeError(f'json: unknown field "{key}"')
            raise DecodeError(f"invalid config key {where}")
        go_path = f"{schema.name}.{f.name}" if mode == "api" else where
        decoded = _value(mode, go_path if mode == "api" else where, f, value)
        if decoded is None and f.name in out:
            continue
        out[f.name] = decoded
    return out


# --- schemas (Consul 1.7 field set plus its snake_case aliases) -----------------------------

MESH_GATEWAY = Schema("MeshGatewayConfig", (F("Mode", "str"),))
EXPOSE_PATH = Schema(
    "ExposePath",
    (
        F("ListenerPort", "int", aliases=("listener_port",)),
        F("Path", "str"),
        F("LocalPathPort", "int", aliases=("local_path_port",)),
        F("Protocol", "str"),
        F("ParsedFromCheck", "bool", aliases=("parsed_from_check",)),
    ),
)
EXPOSE = Schema("ExposeConfig", (F("Checks", "bool"), F("Paths", "objlist", EXPOSE_PATH)))
UPSTREAM = Schema(
    "Upstream",
    (
        F("DestinationType", "str", aliases=("destination_type",)),
        F("DestinationNamespace", "str", aliases=("destination_namespace",)),
        F("DestinationName", "str", aliases=("destination_name",)),
        F("Datacenter", "str"),
        F("LocalBindAddress", "str", aliases=("local_bind_address",)),
        F("LocalBindPort", "int", aliases=("local_bind_port",)),
        F("LocalBindSocketPath", "str", aliases=("local_bind_socket_path",)),
        F("LocalBindSocketMode", "str", aliases=("local_bind_socket_mode",)),
        F("DestinationPartition", "str", aliases=("destination_partition",)),
        F("DestinationPeer", "str", aliases=("destination_peer",)),
        F("Config", "any"),
        F("MeshGateway", "obj", MESH_GATEWAY, aliases=("mesh_gateway",)),
    ),
)
PROXY = Schema(
    "ConnectProxyConfig",
    (
        F("DestinationServiceName", "str", aliases=("destination_service_name",)),
        F("DestinationServiceID", "str", aliases=("destination_service_id",)),
        F("LocalServiceAddress", "str", aliases=("local_service_address",)),
        F("LocalServicePort", "int", aliases=("local_service_port",)),
        F("LocalServiceSocketPath", "str", aliases=("local_service_socket_path",)),
        F("Mode", "str"),
        F("TransparentProxy", "any", aliases=("transparent_proxy",)),
        F("AccessLogs", "any", aliases=("access_logs",)),
        F("Config", "any"),
        F("Upstreams", "objlist", UPSTREAM),
        F("MeshGateway", "obj", MESH_GATEWAY, aliases=("mesh_gateway",)),
        F("Expose", "obj", EXPOSE),
    ),
)
_CHECK_FIELDS = (
    F("CheckID", "str", file_key="id"),
    F("Name", "str"),
    F("Status", "str"),
    F("Notes", "str"),
    F("ScriptArgs", "strlist", aliases=("args", "script_args"), file_key="args"),
    F("HTTP", "str"),
    F("Header", "any"),
    F("Method", "str"),
    F("Body", "str"),
    F("TCP", "str"),
    F("Interval", "dur"),
    F("AliasNode", "str"),
    F("AliasService", "str"),
    F("DockerContainerID", "str", aliases=("docker_container_id",)),
    F("Shell", "str"),
    F("GRPC", "str"),
    F("GRPCUseTLS", "bool", aliases=("grpc_use_tls",)),
    F("TLSSkipVerify", "bool", aliases=("tls_skip_verify",)),
    F("TLSServerName", "str", aliases=("tls_server_name",)),
    F("TCPUseTLS", "bool", aliases=("tcp_use_tls",)),
    F("H2PING", "str"),
    F("H2PingUseTLS", "bool", aliases=("h2ping_use_tls",)),
    F("Timeout", "dur"),
    F("TTL", "dur"),
    F("SuccessBeforePassing", "int"),
    F("FailuresBeforeCritical", "int"),
    F("DeregisterCriticalServiceAfter", "dur", aliases=("deregister_critical_service_after",)),
    F("OutputMaxSize", "int"),
)
CHECK_TYPE = Schema("CheckType", _CHECK_FIELDS)
CHECK_DEFINITION = Schema(
    "CheckDefinition",
    (
        F("ID", "str"),
        *_CHECK_FIELDS,
        F("ServiceID", "str", aliases=("service_id",)),
        F("Token", "str"),
    ),
)
WEIGHTS = Schema("Weights", (F("Passing", "int"), F("Warning", "int")))
TAGGED_ADDRESS = Schema("ServiceAddress", (F("Address", "str"), F("Port", "int")))
_SERVICE_FIELDS = (
    F("Kind", "str"),
    F("ID", "str"),
    F("Name", "str"),
    F("Tags", "strlist"),
    F("Address", "str"),
    F("TaggedAddresses", "objmap", TAGGED_ADDRESS, aliases=("tagged_addresses",)),
    F("Meta", "strmap"),
    F("Port", "int"),
    F("Weights", "obj", WEIGHTS),
    F("Check", "obj", CHECK_TYPE),
    F("Checks", "objlist", CHECK_TYPE),
    F("Token", "str"),
    F("EnableTagOverride", "bool", aliases=("enable_tag_override",)),
    F("Proxy", "obj", PROXY),
)
# A sidecar may carry `connect` only to be refused with Consul's message later, so its
# nested SidecarService is kept opaque.
SIDECAR = Schema(
    "ServiceDefinition",
    (
        *_SERVICE_FIELDS,
        F(
            "Connect",
            "obj",
            Schema(
                "ServiceConnect",
                (F("Native", "bool"), F("SidecarService", "any", aliases=("sidecar_service",))),
            ),
        ),
    ),
)
SERVICE = Schema(
    "ServiceDefinition",
    (
        *_SERVICE_FIELDS,
        F(
            "Connect",
            "obj",
            Schema(
                "ServiceConnect",
                (
                    F("Native", "bool"),
                    F("SidecarService", "obj", SIDECAR, aliases=("sidecar_service",)),
                ),
            ),
        ),
    ),
)
# Consul 1.7 still decodes the managed proxy of 1.2-1.5 (`connect.proxy`) in API bodies and
# then ignores it (consul-1.7.14-edges e32, e33: 200, nothing registered for it), so the
# registration endpoint reads it with this schema; config files keep SERVICE.
MANAGED_PROXY = Schema(
    "ServiceDefinitionConnectProxy",
    (
        F("Command", "strlist"),
        F("ExecMode", "str", aliases=("exec_mode",)),
        F("Config", "any"),
        F("Upstreams", "objlist", UPSTREAM),
    ),
)
SERVICE_API = Schema(
    "ServiceDefinition",
    (
        *_SERVICE_FIELDS,
        F(
            "Connect",
            "obj",
            Schema(
                "ServiceConnect",
                (
                    F("Native", "bool"),
                    F("Proxy", "obj", MANAGED_PROXY),
                    F("SidecarService", "obj", SIDECAR, aliases=("sidecar_service",)),
                ),
            ),
        ),
    ),
)

INTENTION = Schema(
    "Intention",
    (
        F("ID", "str"),
        F("Description", "str"),
        F("SourceNS", "str"),
        F("SourceName", "str"),
        F("DestinationNS", "str"),
        F("DestinationName", "str"),
        F("SourceType", "str"),
        F("Action", "str"),
        F("DefaultAddr", "str"),
        F("DefaultPort", "int"),
        F("Meta", "strmap"),
        F("Precedence", "int"),
        F("CreatedAt", "str"),
        F("UpdatedAt", "str"),
        F("Hash", "str"),
        F("CreateIndex", "int"),
        F("ModifyIndex", "int"),
    ),
)
QUERY_SERVICE = Schema(
    "ServiceQuery",
    (
        F("Service", "str"),
        F(
            "Failover",
            "obj",
            Schema("QueryDatacenterOptions", (F("NearestN", "int"), F("Datacenters", "strlist"))),
        ),
        F("OnlyPassing", "bool"),
        F("IgnoreCheckIDs", "strlist"),
        F("Near", "str"),
        F("Tags", "strlist"),
        F("NodeMeta", "strmap"),
        F("ServiceMeta", "strmap"),
        F("Connect", "bool"),
    ),
)
QUERY = Schema(
    "PreparedQuery",
    (
        F("ID", "str"),
        F("Name", "str"),
        F("Session", "str"),
        F("Token", "str"),
        F(
            "Template",
            "obj",
            Schema(
                "QueryTemplateOptions",
                (F("Type", "str"), F("Regexp", "str"), F("RemoveEmptyTags", "bool")),
            ),
        ),
        F("Service", "obj", QUERY_SERVICE),
        F("DNS", "obj", Schema("QueryDNSOptions", (F("TTL", "str"),))),
        F("CreateIndex", "int"),
        F("ModifyIndex", "int"),
    ),
)
AUTHORIZE = Schema(
    "ConnectAuthorizeRequest",
    (F("Target", "str"), F("ClientCertURI", "str"), F("ClientCertSerial", "str")),
)
