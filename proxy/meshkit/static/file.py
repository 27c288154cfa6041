# SPDX-License-Identifier: MPL-2.0
"""Static mode: the YAML file (plus flags) turned into a `ProxyConfig` and certificate files.

The file holds what Consul would otherwise supply: the leaf chain, key and roots files, each
upstream's targets (address and expected SPIFFE ID), the allowed source identities, timeouts.
Flags win over the file where both say something. Every problem is collected and reported on
its own line naming the file and the key; nothing is applied unless all of it is valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshkit import bounded, fields
from meshkit.authz import StaticAuthorizer
from meshkit.config import (
    DEFAULT_CONNECT_TIMEOUT_MS,
    DEFAULT_DRAIN_TIMEOUT_MS,
    DEFAULT_HANDSHAKE_TIMEOUT_MS,
    DEFAULT_LOCAL_CONNECT_TIMEOUT_MS,
    ConfigError,
    ProxyConfig,
    PublicListener,
    UpstreamListener,
)
from meshkit.flags import AUTO, CommandLine, WorkersSetting, parse_setting
from meshkit.resolver import PREPARED_QUERY, SERVICE, StaticResolver, Target
from meshkit.spiffe import SpiffeError, parse_service_uri
from meshkit.static.certs import MaterialFiles

# Allowed keys per section: a typo is an error, never silently ignored.
TOP_KEYS = {
    "service",
    "tls",
    "public_listener",
    "authorization",
    "upstreams",
    "admin",
    "drain_timeout_ms",
    "allow_non_loopback_service",
    "workers",
}
TLS_KEYS = {"cert_file", "key_file", "ca_file", "ca_files", "trust_domain"}
# A trust domain is a DNS-style host (`<cluster id>.consul`), as in spiffe://<domain>/...
_TRUST_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
PUBLIC_KEYS = {
    "bind_address",
    "bind_port",
    "local_service_address",
    "local_connect_timeout_ms",
    "handshake_timeout_ms",
}
AUTHZ_KEYS = {"allow", "deny", "default"}
UPSTREAM_KEYS = {
    "destination_name",
    "destination_type",
    "datacenter",
    "local_bind_address",
    "local_bind_port",
    "connect_timeout_ms",
    "allow_non_loopback",
    "targets",
}
TARGET_KEYS = {"address", "spiffe_id"}
ADMIN_KEYS = {"bind"}


@dataclass(frozen=True)
class StaticSetup:
    config: ProxyConfig
    files: MaterialFiles
    workers: WorkersSetting = AUTO  # -workers, else the file's `workers:`; read at start only


def load(cmd: CommandLine) -> StaticSetup:
    assert cmd.config is not None
    path = Path(cmd.config)
    p = fields.Problems(str(path))
    try:
        raw = bounded.load_yaml(path)
    except bounded.FileError as exc:
        raise ConfigError([str(exc)]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: the top level must be a mapping"])
    base = path.resolve().parent
    fields.check_keys(p, "", raw, TOP_KEYS)

    service = cmd.service or fields.string(p, "service", raw.get("service"))
    if cmd.service and raw.get("service") and raw["service"] != cmd.service:
        p.add("service", f"says {raw['service']!r} but -service says {cmd.service!r}")
    if not service:
        p.add("service", "missing: set `service:` or pass -service NAME")

    # TLS material
    tls_data = fields.section(p, raw, "tls", TLS_KEYS)
    if not tls_data:
        p.add("tls", "missing: cert_file, key_file and ca_file(s) are required")
    cert = (
        fields.existing_file(p, "tls.cert_file", tls_data.get("cert_file"), base)
        if tls_data
        else None
    )
    key = (
        fields.existing_file(p, "tls.key_file", tls_data.get("key_file"), base)
        if tls_data
        else None
    )
    if tls_data and "cert_file" not in tls_data:
        p.add("tls.cert_file", "missing (the leaf certificate followed by its intermediates)")
    if tls_data and "key_file" not in tls_data:
        p.add("tls.key_file", "missing (the leaf's private key)")
    roots: list[Path] = []
    if tls_data:
        ca_list: list[object] = []
        if "ca_file" in tls_data:
            ca_list.append(tls_data["ca_file"])
        if "ca_files" in tls_data:
            if isinstance(tls_data["ca_files"], list):
                ca_list.extend(tls_data["ca_files"])
            else:
                p.add("tls.ca_files", "must be a list of file paths")
        if not ca_list and "ca_files" not in tls_data:
            p.add("tls.ca_files", "missing: at least one CA roots file is required")
        for i, item in enumerate(ca_list):
            found = fields.existing_file(p, f"tls.ca_files[{i}]", item, base)
            if found is not None:
                roots.append(found)

    trust_domain = cmd.trust_domain or (
        fields.string(p, "tls.trust_domain", tls_data.get("trust_domain")) if tls_data else None
    )
    trust_domains: tuple[str, ...] = ()
    if trust_domain:
        domain = trust_domain.strip().lower().removeprefix("spiffe://").rstrip("/")
        if _TRUST_DOMAIN.match(domain):
            trust_domains = (domain,)
        else:
            where = "-trust-domain" if cmd.trust_domain else "tls.trust_domain"
            p.add(where, f"{trust_domain!r} is not a trust domain (like 1234abcd.consul)")

    # Public listener
    pub_data = fields.section(p, raw, "public_listener", PUBLIC_KEYS)
    public: PublicListener | None = None
    bind = cmd.listen
    if bind is None and pub_data:
        host = (
            fields.string(p, "public_listener.bind_address", pub_data.get("bind_address"))
            or "0.0.0.0"
        )
        port = fields.port(p, "public_listener.bind_port", pub_data.get("bind_port"))
        if port is None and "bind_port" not in pub_data:
            p.add("public_listener.bind_port", "missing (or pass -listen HOST:PORT)")
        bind = (host, port) if port is not None else None
    if bind is not None and cmd.bind_address:
        bind = (cmd.bind_address, bind[1])
    local = cmd.service_addr or fields.hostport(
        p, "public_listener.local_service_address", pub_data.get("local_service_address")
    )
    if bind is not None or pub_data:
        if local is None and "local_service_address" not in pub_data:
            p.add(
                "public_listener.local_service_address",
                "missing: where the local app listens (or pass -service-addr HOST:PORT)",
            )
        if bind is not None and local is not None:
            public = PublicListener(
                bind_host=bind[0],
                bind_port=bind[1],
                local_host=local[0],
                local_port=local[1],
                local_connect_timeout_ms=fields.millis(
                    p,
                    "public_listener.local_connect_timeout_ms",
                    pub_data.get("local_connect_timeout_ms"),
                    DEFAULT_LOCAL_CONNECT_TIMEOUT_MS,
                ),
                handshake_timeout_ms=fields.millis(
                    p,
                    "public_listener.handshake_timeout_ms",
                    pub_data.get("handshake_timeout_ms"),
                    DEFAULT_HANDSHAKE_TIMEOUT_MS,
                ),
            )
    elif cmd.service_addr:
        p.add("public_listener", "-service-addr given without -listen or public_listener")

    # Authorization
    authz_data = fields.section(p, raw, "authorization", AUTHZ_KEYS)
    default = authz_data.get("default")
    if default is not None and default not in ("allow", "deny"):
        p.add("authorization.default", f"must be allow or deny, got {default!r}")
        default = None
    authorizer = StaticAuthorizer.from_lists(
        fields.names(p, "authorization.allow", authz_data.get("allow")),
        fields.names(p, "authorization.deny", authz_data.get("deny")),
        default,
    )

    # Upstreams: the file gives targets; -upstream flags may add or override the bind.
    file_ups: dict[str, dict[str, Any]] = {}
    ups_raw = raw.get("upstreams")
    if ups_raw is not None and not isinstance(ups_raw, list):
        p.add("upstreams", "must be a list")
        ups_raw = []
    for i, item in enumerate(ups_raw or []):
        where = f"upstreams[{i}]"
        if not isinstance(item, dict):
            p.add(where, "must be a mapping")
            continue
        fields.check_keys(p, where, item, UPSTREAM_KEYS)
        name = fields.string(p, f"{where}.destination_name", item.get("destination_name"))
        if name is None:
            if "destination_name" not in item:
                p.add(f"{where}.destination_name", "missing")
            continue
        item = dict(item, _where=where)
        if name in file_ups:
            p.add(f"{where}.destination_name", f"{name!r} appears twice")
        file_ups[name] = item
    upstreams: list[UpstreamListener] = []
    flagged = {f.name: f for f in cmd.upstreams}
    for flag in cmd.upstreams:
        if flag.name not in file_ups:
            p.add(
                "upstreams",
                f"-upstream {flag.name} has no entry here; add one with destination_name: "
                f"{flag.name} and its targets",
            )
    for name, item in file_ups.items():
        up = _upstream(p, name, item, flagged.get(name))
        if up is not None:
            upstreams.append(up)

    admin_data = fields.section(p, raw, "admin", ADMIN_KEYS)
    admin = cmd.admin_bind or fields.hostport(p, "admin.bind", admin_data.get("bind"))
    drain = fields.millis(
        p, "drain_timeout_ms", raw.get("drain_timeout_ms"), DEFAULT_DRAIN_TIMEOUT_MS
    )
    allow_nl = cmd.allow_non_loopback_service or fields.boolean(
        p, "allow_non_loopback_service", raw.get("allow_non_loopback_service")
    )
    workers: WorkersSetting = AUTO
    if raw.get("workers") is not None:
        try:
            workers = parse_setting(raw["workers"])
        except ValueError as exc:
            p.add("workers", str(exc))
    if cmd.workers is not None:
        workers = cmd.workers
    if p.items:
        raise ConfigError(p.items)
    assert service and cert and key
    config = ProxyConfig(
        service=service,
        public=public,
        upstreams=tuple(upstreams),
        authorizer=authorizer,
        admin=admin,
        allow_non_loopback_service=allow_nl,
        drain_timeout_ms=drain,
        source=str(path),
    )
    config.check()
    files = MaterialFiles(cert, key, tuple(roots), trust_domains)
    return StaticSetup(config, files, workers)


def _upstream(
    p: fields.Problems, name: str, item: dict[str, Any], flag: Any
) -> UpstreamListener | None:
    where = item["_where"]
    before = len(p.items)
    dst_type = item.get("destination_type", SERVICE)
    if dst_type not in (SERVICE, PREPARED_QUERY):
        p.add(f"{where}.destination_type", f"must be service or prepared_query, got {dst_type!r}")
    if flag is not None:
        host, port = flag.host, flag.port
        dst_type = flag.dst_type
    else:
        host = (
            fields.string(p, f"{where}.local_bind_address", item.get("local_bind_address"))
            or "127.0.0.1"
        )
        port_v = fields.port(p, f"{where}.local_bind_port", item.get("local_bind_port"))
        if port_v is None and "local_bind_port" not in item:
            p.add(f"{where}.local_bind_port", "missing (or pass -upstream NAME:PORT)")
        port = port_v or 0
    timeout = fields.millis(
        p, f"{where}.connect_timeout_ms", item.get("connect_timeout_ms"), DEFAULT_CONNECT_TIMEOUT_MS
    )
    targets: list[Target] = []
    raw_targets = item.get("targets")
    if not isinstance(raw_targets, list) or not raw_targets:
        p.add(f"{where}.targets", "must be a non-empty list of {address, spiffe_id}")
        raw_targets = []
    for j, t in enumerate(raw_targets):
        tw = f"{where}.targets[{j}]"
        if not isinstance(t, dict):
            p.add(tw, "must be a mapping with address and spiffe_id")
            continue
        fields.check_keys(p, tw, t, TARGET_KEYS)
        addr = fields.hostport(p, f"{tw}.address", t.get("address"))
        if "address" not in t:
            p.add(f"{tw}.address", "missing (HOST:PORT of the remote proxy's public listener)")
        sid_text = fields.string(p, f"{tw}.spiffe_id", t.get("spiffe_id"))
        if "spiffe_id" not in t:
            p.add(f"{tw}.spiffe_id", "missing (the identity the remote certificate must carry)")
        sid = None
        if sid_text is not None:
            try:
                sid = parse_service_uri(sid_text)
            except SpiffeError as exc:
                p.add(f"{tw}.spiffe_id", str(exc))
        if addr is not None and sid is not None:
            targets.append(Target(addr[0], addr[1], sid, dst_type))
    allow_nl = fields.boolean(p, f"{where}.allow_non_loopback", item.get("allow_non_loopback"))
    dc = fields.string(p, f"{where}.datacenter", item.get("datacenter")) or ""
    if len(p.items) != before:
        return None
    return UpstreamListener(
        name=name,
        resolver=StaticResolver(tuple(targets)),
        bind_host=host,
        bind_port=port,
        dst_type=dst_type,
        connect_timeout_ms=timeout,
        allow_non_loopback=allow_nl,
        datacenter=dc,
    )
