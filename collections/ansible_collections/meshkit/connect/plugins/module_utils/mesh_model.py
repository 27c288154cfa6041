# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)
"""The mesh model: what users write in inventory variables, parsed once into typed objects.

Modules, filter plugins, ``meshkit render`` and ``meshkit nomad`` all validate through
``parse_mesh`` so a description that cannot work is refused the same way everywhere, before
anything touches a host. Pure Python on purpose: no Ansible import, so the CLI and the Nomad
renderer can use it without ansible-core.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.meshkit.connect.plugins.module_utils.mesh_legacy import (
    LegacyProblems,
    modernize_model,
)
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_listeners import (
    listener_problems,
)
from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import (
    ModelError,
    Problem,
    Reader,
    plain,
)

SIDECAR_SUFFIX = "-sidecar-proxy"

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_ID_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.:-]{0,126}[A-Za-z0-9])?$")
_DC_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
_META_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

NAME_FIX = "use 1-63 lower-case letters, digits and dashes, starting and ending alphanumeric"


# --- the model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """A health check owned by its service (registered with ``replace-existing-checks``)."""

    name: str
    id: str = ""
    tcp: str = ""
    http: str = ""
    method: str = ""
    header: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    tls_skip_verify: bool = False
    ttl: str = ""
    args: tuple[str, ...] = ()
    alias_service: str = ""
    interval: str = ""
    timeout: str = ""
    deregister_critical_service_after: str = ""
    notes: str = ""
    status: str = ""

    @property
    def type(self) -> str:
        """Consul's name for the kind of check (the ``Type`` of ``/v1/agent/checks``)."""
        for kind in ("tcp", "http", "ttl", "alias_service", "args"):
            if getattr(self, kind):
                return {"alias_service": "alias", "args": "script"}.get(kind, kind)
        return ""


@dataclass(frozen=True)
class Upstream:
    destination_name: str
    destination_type: str = "service"
    datacenter: str = ""
    local_bind_address: str = "127.0.0.1"
    local_bind_port: int = 0
    config: Mapping[str, Any] = field(default_factory=dict)
    allow_non_loopback: bool = False


@dataclass(frozen=True)
class Sidecar:
    port: int | None = None  # None: Consul assigns one from 21000-21255
    address: str = ""  # public listener; "" = inherit the service's registration address
    local_service_address: str = "127.0.0.1"
    local_service_port: int = 0
    admin_port: int | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    upstreams: tuple[Upstream, ...] = ()


@dataclass(frozen=True)
class ServiceAcl:
    """What the token minted for this service's proxy carries beyond its own service identity
    (``meshkit_acl_mode: per_service``): extra policies and identities of this host's services."""

    policies: tuple[str, ...] = ()
    service_identities: tuple[str, ...] = ()


@dataclass(frozen=True)
class AclPolicy:
    """An ACL policy the rollout creates (``meshkit_acl_policies``), HCL or JSON rules."""

    name: str
    rules: str
    description: str = ""


@dataclass(frozen=True)
class MeshAcl:
    """``shared``: one token (``meshkit_consul_token``) everywhere, as before; ``per_service``:
    a token per proxy, minted on the controller with the management token."""

    mode: str = "shared"
    policies: tuple[AclPolicy, ...] = ()
    known_policies: tuple[str, ...] = ()


@dataclass(frozen=True)
class Service:
    name: str
    id: str
    port: int | None = None
    address: str = "127.0.0.1"
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=dict)
    checks: tuple[Check, ...] = ()
    sidecar: Sidecar | None = None
    allow_non_loopback: bool = False
    nomad: Mapping[str, Any] = field(default_factory=dict)
    native: bool = False  # connect: {native: true}: the app speaks mTLS itself (meshkit.native)
    acl: ServiceAcl = field(default_factory=ServiceAcl)

    @property
    def sidecar_id(self) -> str:
        """The ID Consul forces on a ``sidecar_service``: ``<parent ID>-sidecar-proxy``."""
        return f"{self.id}{SIDECAR_SUFFIX}"

    @property
    def sidecar_name(self) -> str:
        return f"{self.name}{SIDECAR_SUFFIX}"


@dataclass(frozen=True)
class PreparedQuery:
    name: str
    service: str
    tags: tuple[str, ...] = ()
    only_passing: bool = True
    near: str = ""
    failover_nearest_n: int = 0
    failover_datacenters: tuple[str, ...] = ()
    connect: bool = True


@dataclass(frozen=True)
class Intention:
    source: str
    destination: str
    action: str = "allow"
    description: str = ""


@dataclass(frozen=True)
class Mesh:
    datacenter: str = "dc1"
    services: tuple[Service, ...] = ()
    prepared_queries: tuple[PreparedQuery, ...] = ()
    intentions: tuple[Intention, ...] = ()
    acl: MeshAcl = field(default_factory=MeshAcl)
    # deprecation warnings of older Consul proxy forms converted by mesh_legacy.py
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def service(self, service_id: str) -> Service:
        for svc in self.services:
            if svc.id == service_id:
                return svc
        raise KeyError(service_id)


def _check_name(r: Reader, value: str, path: str, what: str) -> None:
    """A Consul service, query or intention name: also a DNS label and a Nomad group name."""
    if not value:
        r.add(path, f"{what} is empty", NAME_FIX)
    elif value == "*":
        r.add(path, f"{what} cannot be the wildcard '*'", "name one service")
    elif not _NAME_RE.match(value):
        upper = value.lower() != value
        detail = " (Nomad refuses upper case in group names)" if upper else ""
        r.add(path, f"{what} {value!r} is not a valid name{detail}", NAME_FIX)


def _check_address(
    r: Reader, value: str, path: str, what: str, *, allow_non_loopback: bool
) -> None:
    """A bind address: an IP Consul accepts, loopback unless the item allows otherwise."""
    if value == "":
        return
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        if value == "localhost":
            return
        r.add(path, f"{what} {value!r} is not an IP address", "use e.g. 127.0.0.1")
        return
    if ip.is_unspecified:
        r.add(
            path,
            f"{what} {value} is a wildcard address that Consul rejects",
            "use 127.0.0.1",
        )
    elif not ip.is_loopback and not allow_non_loopback:
        r.add(
            path,
            f"{what} {value} is not a loopback address, so traffic could bypass the mesh",
            "use 127.0.0.1 (or set allow_non_loopback: true on this item, deliberately)",
        )


def _meta_value(value: Any) -> str:
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


# --- parsing ----------------------------------------------------------------------------------

_SERVICE_KEYS = {
    "name", "id", "port", "address", "allow_non_loopback", "tags", "meta", "checks", "sidecar",
    "nomad", "connect",
    "defaults",  # service-defaults entry: read by mesh_defaults.py
}  # fmt: skip
_SERVICE_KEYS |= {"acl"}
_SIDECAR_KEYS = {
    "port", "address", "local_service_address", "local_service_port", "admin_port", "config",
    "upstreams",
}  # fmt: skip
_UPSTREAM_KEYS = {
    "destination_name", "destination_type", "datacenter", "local_bind_address",
    "local_bind_port", "config", "allow_non_loopback",
}  # fmt: skip
_CHECK_KEYS = {
    "name", "id", "tcp", "http", "method", "header", "tls_skip_verify", "ttl", "args",
    "alias_service", "interval", "timeout", "deregister_critical_service_after", "notes",
    "status",
}  # fmt: skip
_ACL_TOP_KEYS = {"acl_mode", "acl_policies", "acl_known_policies"}
_ACL_SERVICE_KEYS = {"policies", "service_identities"}
_ACL_POLICY_KEYS = {"name", "rules", "description"}
_ACL_MODES = ("shared", "per_service")
_POLICY_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_QUERY_KEYS = {"name", "service", "tags", "only_passing", "near", "failover", "connect"}
_INTENTION_KEYS = {"source", "destination", "action", "description"}
_TOP_KEYS = {"datacenter", "services", "prepared_queries", "intentions"} | _ACL_TOP_KEYS
_TOP_KEYS |= {"proxy_defaults"}  # the proxy-defaults entry: read by mesh_defaults.py


def parse_mesh(
    data: Mapping[str, Any],
    *,
    source: str = "vars",
    known_queries: Collection[str] = (),
) -> Mesh:
    """Parse and validate one host's view of the mesh; raise ``ModelError`` with every problem.

    ``data`` holds ``services`` (the services of ONE host: listener clashes are checked among
    them), ``prepared_queries``, ``intentions`` and ``datacenter``; the ``meshkit_`` prefix of
    the inventory variables is accepted too. ``known_queries`` names prepared queries that
    already exist in Consul, so an upstream may point at a query this model does not define.
    """
    r = Reader()
    try:  # older Consul proxy forms in services: converted first (mesh_legacy.py)
        data, legacy_warnings = (
            modernize_model(data, source) if isinstance(data, Mapping) else (data, [])
        )
    except LegacyProblems as err:
        fix = "write the service with a sidecar (docs/mesh-model.md, older proxy forms)"
        raise ModelError([Problem(p, m, fix) for p, m in err.problems], source) from None
    top = r.mapping(data, "(top level)")
    if top is None:
        raise ModelError(r.problems, source)
    top = {
        k[len("meshkit_") :] if isinstance(k, str) and k.startswith("meshkit_") else k: v
        for k, v in top.items()
    }
    if top and not any(k in _TOP_KEYS for k in top):
        # Inventory vars hold much else, so other keys are ignored, unless nothing at all is
        # recognised: then the file is most likely misspelt.
        r.known_keys(data, _TOP_KEYS | {f"meshkit_{k}" for k in _TOP_KEYS}, "")
    datacenter = r.string(top, "datacenter", "", "dc1") or "dc1"
    if not _DC_RE.match(datacenter):
        r.add("datacenter", f"{datacenter!r} is not a valid datacenter name", NAME_FIX)

    queries = tuple(
        q for q in (_parse_query(r, p, v) for p, v in r.items(top, "prepared_queries", "")) if q
    )
    _unique(r, [(f"prepared_queries[{i}]", q.name) for i, q in enumerate(queries)], "query name")
    intentions = tuple(
        i for i in (_parse_intention(r, p, v) for p, v in r.items(top, "intentions", "")) if i
    )
    _unique(
        r,
        [
            (f"intentions[{i}] ({x.source} -> {x.destination})", f"{x.source} -> {x.destination}")
            for i, x in enumerate(intentions)
        ],
        "intention",
    )
    query_names = {q.name for q in queries} | set(known_queries)
    services = tuple(
        s
        for s in (_parse_service(r, p, v, query_names) for p, v in r.items(top, "services", ""))
        if s
    )
    _check_ids(r, services)
    r.problems.extend(listener_problems(services))
    acl = _parse_mesh_acl(r, top)
    _check_service_acls(r, services, acl)
    if r.problems:
        raise ModelError(r.problems, source)
    return Mesh(datacenter, services, queries, intentions, acl=acl, warnings=tuple(legacy_warnings))


def _label(path: str, name: str) -> str:
    return f"{path} ({name})" if name else path


def _parse_service(
    r: Reader, path: str, value: Any, query_names: Collection[str]
) -> Service | None:
    data = r.mapping(value, path)
    if data is None:
        return None
    name = r.string(data, "name", path)
    path = _label(path, name)
    r.known_keys(data, _SERVICE_KEYS, path)
    _check_name(r, name, f"{path}.name", "service name")
    sid = r.string(data, "id", path) or name
    if sid and not _ID_RE.match(sid):
        r.add(f"{path}.id", f"service id {sid!r} cannot be used in URLs", "use [A-Za-z0-9_.:-]")
    allow = r.boolean(data, "allow_non_loopback", path, False)
    native = _parse_connect(r, path, data, name)
    address = r.string(data, "address", path, "127.0.0.1") or "127.0.0.1"
    # A native service's address is its public mesh address: loopback-only does not apply.
    _check_address(
        r,
        address,
        f"{path}.address",
        f"service {name!r} address",
        allow_non_loopback=allow or native,
    )
    port = r.port(data, "port", path)
    tags = r.strings(data, "tags", path)
    meta_map = r.mapping(data.get("meta"), f"{path}.meta") or {}
    meta: dict[str, str] = {}
    for key, val in meta_map.items():
        if not isinstance(key, str) or not _META_KEY_RE.match(key) or key.startswith("consul-"):
            r.add(f"{path}.meta.{key}", f"Consul refuses meta key {key!r}", "use [A-Za-z0-9_-]")
        elif isinstance(val, (Mapping, list)):
            r.add(f"{path}.meta.{key}", "meta values must be strings", "quote the value")
        else:
            meta[key] = _meta_value(val)
    checks = tuple(
        c for c in (_parse_check(r, p, v, name) for p, v in r.items(data, "checks", path)) if c
    )
    nomad = r.mapping(data.get("nomad"), f"{path}.nomad") or {}
    group = nomad.get("group")
    if group is not None:
        _check_name(r, str(group), f"{path}.nomad.group", f"service {name!r} Nomad group name")
    sidecar = None
    if data.get("sidecar") is not None:
        sidecar = _parse_sidecar(
            r, f"{path}.sidecar", data["sidecar"], name, address, port, allow, query_names
        )
    return Service(
        name=name,
        id=sid,
        port=port,
        address=address,
        tags=tags,
        meta=meta,
        checks=checks,
        sidecar=sidecar,
        allow_non_loopback=allow,
        nomad=plain(nomad),
        native=native,
        acl=_parse_service_acl(r, f"{path}.acl", data.get("acl")),
    )


_CONNECT_KEYS = {"native"}
NATIVE_UPSTREAMS_FIX = (
    "remove the upstreams: a Connect-native app picks its upstreams at run time "
    "(meshkit.native: await svc.connect('db') or http://db.service.consul/); or drop "
    "connect.native and give the service a sidecar with upstreams"
)


def _parse_connect(r: Reader, path: str, data: Mapping[str, Any], name: str) -> bool:
    """``connect: {native: true}``; refuses what cannot go with it (sidecar, upstreams, no port).

    A Connect-native service has no sidecar: the application terminates mTLS on its own port,
    which is what Consul advertises to every peer, so that port is required and is public.
    """
    conn = r.mapping(data.get("connect"), f"{path}.connect")
    if not conn:
        return False
    if "upstreams" in conn:
        r.add(
            f"{path}.connect.upstreams",
            f"service {name!r} is Connect-native and cannot have upstreams",
            NATIVE_UPSTREAMS_FIX,
        )
    r.known_keys(
        {k: v for k, v in conn.items() if k != "upstreams"}, _CONNECT_KEYS, f"{path}.connect"
    )
    native = r.boolean(conn, "native", f"{path}.connect", False)
    if not native:
        return False
    sidecar = data.get("sidecar")
    if isinstance(sidecar, Mapping) and sidecar.get("upstreams"):
        r.add(
            f"{path}.sidecar.upstreams",
            f"service {name!r} is Connect-native and cannot have upstreams",
            NATIVE_UPSTREAMS_FIX,
        )
    elif sidecar is not None:
        r.add(
            f"{path}.sidecar",
            f"service {name!r} is Connect-native (connect.native: true) and has a sidecar",
            "remove the sidecar: a native app speaks mTLS itself on its own port; or drop "
            "connect.native to put meshkit-proxy in front of it",
        )
    if "upstreams" in data:
        r.add(
            f"{path}.upstreams",
            f"service {name!r} is Connect-native and cannot have upstreams",
            NATIVE_UPSTREAMS_FIX,
        )
    if data.get("port") in (None, ""):
        r.add(
            f"{path}.port",
            f"service {name!r} is Connect-native but has no port",
            "set port: the port the app serves mTLS on (peers dial it directly)",
        )
    return True


def _parse_check(r: Reader, path: str, value: Any, service: str) -> Check | None:
    data = r.mapping(value, path)
    if data is None:
        return None
    r.known_keys(data, _CHECK_KEYS, path)
    name = r.string(data, "name", path)
    if not name:
        r.add(f"{path}.name", f"a check of service {service!r} has no name", "name the check")
    header_map = r.mapping(data.get("header"), f"{path}.header") or {}
    header = {
        str(k): tuple(str(x) for x in (v if isinstance(v, list) else [v]))
        for k, v in header_map.items()
    }
    check = Check(
        name=name,
        id=r.string(data, "id", path),
        tcp=r.string(data, "tcp", path),
        http=r.string(data, "http", path),
        method=r.string(data, "method", path),
        header=header,
        tls_skip_verify=r.boolean(data, "tls_skip_verify", path, False),
        ttl=r.string(data, "ttl", path),
        args=r.strings(data, "args", path),
        alias_service=r.string(data, "alias_service", path),
        interval=r.string(data, "interval", path),
        timeout=r.string(data, "timeout", path),
        deregister_critical_service_after=r.string(data, "deregister_critical_service_after", path),
        notes=r.string(data, "notes", path),
        status=r.string(data, "status", path),
    )
    kinds = [k for k in ("tcp", "http", "ttl", "args", "alias_service") if getattr(check, k)]
    if len(kinds) != 1:
        r.add(
            path,
            f"check {name!r} of service {service!r} needs exactly one of tcp, http, ttl, args, "
            f"alias_service (has {kinds or 'none'})",
            "keep one kind of check per item",
        )
    if kinds and kinds[0] in ("tcp", "http", "args") and not check.interval:
        r.add(
            f"{path}.interval",
            f"check {name!r} of service {service!r} needs an interval",
            "add interval: 10s",
        )
    for key in ("interval", "timeout", "ttl", "deregister_critical_service_after"):
        r.duration_text(getattr(check, key), f"{path}.{key}")
    if check.status not in ("", "passing", "warning", "critical"):
        r.add(
            f"{path}.status",
            f"unknown initial status {check.status!r}",
            "use passing, warning or critical",
        )
    return check


def _parse_sidecar(
    r: Reader,
    path: str,
    value: Any,
    service: str,
    address: str,
    port: int | None,
    allow: bool,
    query_names: Collection[str],
) -> Sidecar | None:
    data = r.mapping(value, path)
    if data is None:
        return None
    r.known_keys(data, _SIDECAR_KEYS, path)
    sidecar_port: int | None = None
    if data.get("port") not in (None, "", "auto"):
        sidecar_port = r.port(data, "port", path)
    public = r.string(data, "address", path)
    if public:
        try:
            if ipaddress.ip_address(public).is_unspecified:
                r.add(
                    f"{path}.address",
                    f"sidecar of {service!r}: {public} is refused by Consul",
                    "use the host's own address",
                )
        except ValueError:
            r.add(
                f"{path}.address",
                f"sidecar of {service!r}: {public!r} is not an IP address",
                "use the host's own address",
            )
    local_address = r.string(data, "local_service_address", path) or (
        address if address != "localhost" else "127.0.0.1"
    )
    listener = public or address
    if sidecar_port is None and listener and listener not in (local_address, "localhost"):
        r.add(
            f"{path}.port",
            f"sidecar of {service!r} listens on {listener}, but Consul 1.7's default sidecar "
            f"check dials local_service_address ({local_address}); meshkit renders a check at "
            "the listener's address, which needs the port",
            "set sidecar.port to a fixed port",
        )
    if "local_service_address" in data:  # an inherited address was checked on the service
        _check_address(
            r,
            local_address,
            f"{path}.local_service_address",
            f"service {service!r} sidecar local_service_address",
            allow_non_loopback=allow,
        )
    local_port = r.port(data, "local_service_port", path) or port
    if local_port is None:
        r.add(
            f"{path}.local_service_port",
            f"service {service!r} has a sidecar but no port for it to reach the app",
            "set the service's port or sidecar.local_service_port",
        )
    admin = r.port(data, "admin_port", path)
    upstreams = tuple(
        u
        for u in (
            _parse_upstream(r, p, v, service, query_names)
            for p, v in r.items(data, "upstreams", path)
        )
        if u
    )
    keys = [
        (f"{path}.upstreams[{i}]", f"{u.destination_type}:{u.destination_name}@{u.datacenter}")
        for i, u in enumerate(upstreams)
    ]
    _unique(r, keys, f"upstream of service {service!r}")
    return Sidecar(
        port=sidecar_port,
        address=public,
        local_service_address=local_address,
        local_service_port=local_port or 0,
        admin_port=admin,
        config=r.config(data, "config", path),
        upstreams=upstreams,
    )


def _parse_upstream(
    r: Reader, path: str, value: Any, service: str, query_names: Collection[str]
) -> Upstream | None:
    data = r.mapping(value, path)
    if data is None:
        return None
    dest = r.string(data, "destination_name", path)
    path = _label(path, dest)
    r.known_keys(data, _UPSTREAM_KEYS, path)
    dtype = r.string(data, "destination_type", path, "service") or "service"
    what = f"service {service!r} upstream destination_name"
    if dtype == "service":
        _check_name(r, dest, f"{path}.destination_name", what)
    elif dtype == "prepared_query":
        _check_name(r, dest, f"{path}.destination_name", what)
        if dest and dest != "*" and dest not in query_names:
            r.add(
                f"{path}.destination_name",
                f"service {service!r} upstream names prepared query {dest!r}, which the model "
                "does not define and Consul does not hold",
                "add it to meshkit_prepared_queries (or to known_queries if it exists elsewhere)",
            )
    else:
        r.add(
            f"{path}.destination_type",
            f"service {service!r} upstream {dest!r}: unknown destination_type {dtype!r}",
            "use service or prepared_query",
        )
    datacenter = r.string(data, "datacenter", path)
    if datacenter and not _DC_RE.match(datacenter):
        r.add(f"{path}.datacenter", f"{datacenter!r} is not a valid datacenter name", NAME_FIX)
    allow = r.boolean(data, "allow_non_loopback", path, False)
    bind = r.string(data, "local_bind_address", path, "127.0.0.1") or "127.0.0.1"
    _check_address(
        r,
        bind,
        f"{path}.local_bind_address",
        f"service {service!r} upstream {dest!r} local_bind_address",
        allow_non_loopback=allow,
    )
    port = r.port(data, "local_bind_port", path)
    if port is None and "local_bind_port" not in data:
        r.add(
            f"{path}.local_bind_port",
            f"service {service!r} upstream {dest!r} has no local_bind_port",
            "pick a free port outside 21000-21255",
        )
    return Upstream(
        destination_name=dest,
        destination_type=dtype,
        datacenter=datacenter,
        local_bind_address=bind,
        local_bind_port=port or 0,
        config=r.config(data, "config", path),
        allow_non_loopback=allow,
    )


def _parse_query(r: Reader, path: str, value: Any) -> PreparedQuery | None:
    data = r.mapping(value, path)
    if data is None:
        return None
    name = r.string(data, "name", path)
    path = _label(path, name)
    r.known_keys(data, _QUERY_KEYS, path)
    _check_name(r, name, f"{path}.name", "prepared query name")
    service = r.string(data, "service", path)
    _check_name(r, service, f"{path}.service", f"prepared query {name!r} service")
    failover = r.mapping(data.get("failover"), f"{path}.failover") or {}
    r.known_keys(failover, {"nearest_n", "datacenters"}, f"{path}.failover")
    nearest = r.integer(failover, "nearest_n", f"{path}.failover", low=0, high=1000) or 0
    dcs = r.strings(failover, "datacenters", f"{path}.failover")
    for i, dc in enumerate(dcs):
        if not _DC_RE.match(dc):
            r.add(f"{path}.failover.datacenters[{i}]", f"{dc!r} is not a datacenter name", NAME_FIX)
    return PreparedQuery(
        name=name,
        service=service,
        tags=r.strings(data, "tags", path),
        only_passing=r.boolean(data, "only_passing", path, True),
        near=r.string(data, "near", path),
        failover_nearest_n=nearest,
        failover_datacenters=dcs,
        connect=r.boolean(data, "connect", path, True),
    )


def _parse_intention(r: Reader, path: str, value: Any) -> Intention | None:
    data = r.mapping(value, path)
    if data is None:
        return None
    source = r.string(data, "source", path)
    dest = r.string(data, "destination", path)
    path = f"{path} ({source or '?'} -> {dest or '?'})"
    r.known_keys(data, _INTENTION_KEYS, path)
    if source != "*":
        _check_name(r, source, f"{path}.source", "intention source")
    _check_name(r, dest, f"{path}.destination", "intention destination")
    action = r.string(data, "action", path, "allow") or "allow"
    if action not in ("allow", "deny"):
        r.add(
            f"{path}.action",
            f"intention {source} -> {dest}: unknown action {action!r}",
            "use allow or deny",
        )
    return Intention(source, dest, action, r.string(data, "description", path))


# --- ACLs (meshkit_acl_mode per_service: one token per proxy) --------------------------------


def _parse_service_acl(r: Reader, path: str, value: Any) -> ServiceAcl:
    if value is None:
        return ServiceAcl()
    data = r.mapping(value, path)
    if data is None:
        return ServiceAcl()
    r.known_keys(data, _ACL_SERVICE_KEYS, path)
    return ServiceAcl(
        policies=r.strings(data, "policies", path),
        service_identities=r.strings(data, "service_identities", path),
    )


def _parse_mesh_acl(r: Reader, top: Mapping[str, Any]) -> MeshAcl:
    mode = r.string(top, "acl_mode", "", "shared") or "shared"
    if mode not in _ACL_MODES:
        r.add("acl_mode", f"unknown ACL mode {mode!r}", "use shared or per_service")
    policies: list[AclPolicy] = []
    for path, value in r.items(top, "acl_policies", ""):
        data = r.mapping(value, path)
        if data is None:
            continue
        name = r.string(data, "name", path)
        path = _label(path, name)
        r.known_keys(data, _ACL_POLICY_KEYS, path)
        if not _POLICY_NAME_RE.match(name):
            r.add(
                f"{path}.name",
                f"{name!r} is not a valid ACL policy name",
                "use 1-128 letters, digits, '-' and '_'",
            )
        rules = data.get("rules", "")
        if isinstance(rules, Mapping):  # a mapping is sent as JSON rules
            rules = json.dumps(plain(rules), sort_keys=True, indent=2)
        if not isinstance(rules, str) or not rules.strip():
            r.add(
                f"{path}.rules", "rules are missing", "give HCL or JSON rules (text or a mapping)"
            )
            rules = ""
        policies.append(AclPolicy(name, rules, r.string(data, "description", path)))
    _unique(r, [(f"acl_policies[{i}]", p.name) for i, p in enumerate(policies)], "ACL policy")
    known = r.strings(top, "acl_known_policies", "")
    return MeshAcl(mode, tuple(policies), known)


def _check_service_acls(r: Reader, services: Sequence[Service], acl: MeshAcl) -> None:
    """Every extra policy must exist; an extra identity only names a service of this host
    (a proxy's token must not let one host act as another host's service)."""
    defined = {p.name for p in acl.policies} | set(acl.known_policies)
    here = {s.name for s in services}
    for i, svc in enumerate(services):
        path = f"services[{i}] ({svc.name}).acl"
        for j, name in enumerate(svc.acl.policies):
            if name not in defined:
                r.add(
                    f"{path}.policies[{j}]",
                    f"unknown ACL policy {name!r}",
                    "define it in meshkit_acl_policies, or list a policy that already exists "
                    "in Consul in meshkit_acl_known_policies",
                )
        for j, name in enumerate(svc.acl.service_identities):
            if name not in here:
                r.add(
                    f"{path}.service_identities[{j}]",
                    f"{name!r} is not a service of this host; a proxy's token may only carry "
                    "identities of services on its own host",
                    f"remove {name!r} (the proxy of {name!r} gets its own token where it runs)",
                )


def _unique(r: Reader, items: Iterable[tuple[str, str]], what: str) -> None:
    seen: dict[str, str] = {}
    for path, key in items:
        if key in seen:
            r.add(path, f"duplicate {what} {key!r} (first at {seen[key]})", "remove one of them")
        else:
            seen[key] = path


def _check_ids(r: Reader, services: Sequence[Service]) -> None:
    ids: list[tuple[str, str]] = []
    for i, svc in enumerate(services):
        ids.append((f"services[{i}] ({svc.name}).id", svc.id))
        if svc.sidecar is not None:
            ids.append((f"services[{i}] ({svc.name}).sidecar", svc.sidecar_id))
    _unique(r, ids, "service id on this host")


# --- plain data for Ansible -------------------------------------------------------------------


def as_plain(obj: Any) -> Any:
    """A model object as plain dicts/lists/scalars (for filter results and module returns)."""
    if hasattr(obj, "__dataclass_fields__"):
        return {name: as_plain(getattr(obj, name)) for name in obj.__dataclass_fields__}
    if isinstance(obj, Mapping):
        return {str(k): as_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [as_plain(v) for v in obj]
    return obj
