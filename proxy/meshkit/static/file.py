# SPDX-License-Identifier: MPL-2.0
"""Static mode: the YAML file (plus flags) turned into a `ProxyConfig` and certificate files.

The file holds what Consul would otherwise supply: the leaf chain, key and roots files, each
upstream's targets (address and expected SPIFFE ID), the allowed source identities, timeouts.
Flags win over the file where both say something. Every problem is collected and reported on
its own line naming the file and the key; nothing is applied unless all of it is valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from meshkit import bounded, fields
from meshkit.authz import StaticAuthorizer
from meshkit.config import (
    DEFAULT_DRAIN_TIMEOUT_MS,
    ConfigError,
    ProxyConfig,
    UpstreamListener,
)
from meshkit.flags import AUTO, CommandLine, UpstreamFlag, WorkersSetting, parse_setting
from meshkit.resolver import SERVICE, StaticResolver, Target
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
AUTHZ_KEYS = {"allow", "deny", "default"}
UPSTREAM_KEYS = fields.UPSTREAM_KEYS | {"allow_non_loopback", "targets"}
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

    public = fields.public_listener(
        p,
        fields.section(p, raw, "public_listener", fields.PUBLIC_KEYS),
        listen=cmd.listen,
        bind_address=cmd.bind_address,
        service_addr=cmd.service_addr,
        flag_hints=True,
    )

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

    # Upstreams: the file gives targets; -upstream flags may override the bind.
    flagged = {f.name: f for f in cmd.upstreams}
    named = {item.get("destination_name") for item in _entries(raw.get("upstreams"))}
    for flag in cmd.upstreams:
        if flag.name not in named:
            p.add(
                "upstreams",
                f"-upstream {flag.name} has no entry here; add one with destination_name: "
                f"{flag.name} and its targets",
            )
    upstreams = fields.upstreams(
        p, raw.get("upstreams"), lambda where, item: _upstream(p, where, item, flagged)
    )

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
        upstreams=upstreams,
        authorizer=authorizer,
        admin=admin,
        allow_non_loopback_service=allow_nl,
        drain_timeout_ms=drain,
        source=str(path),
    )
    config.check()
    files = MaterialFiles(cert, key, tuple(roots), trust_domains)
    return StaticSetup(config, files, workers)


def _entries(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _upstream(
    p: fields.Problems, where: str, item: dict[str, Any], flagged: dict[str, UpstreamFlag]
) -> UpstreamListener | None:
    """The shared upstream reader, plus what only static mode has: targets and the opt-in to a
    non-loopback bind."""
    before = len(p.items)
    name = item.get("destination_name")
    flag = flagged.get(name) if isinstance(name, str) else None
    up = fields.upstream(
        p,
        where,
        item,
        allowed=UPSTREAM_KEYS,
        bind_flag=(flag.host, flag.port, flag.dst_type) if flag is not None else None,
        flag_hints=True,
    )
    dst_type = up.dst_type if up is not None else item.get("destination_type", SERVICE)
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
    if up is None or len(p.items) != before:
        return None
    return replace(up, resolver=StaticResolver(tuple(targets)), allow_non_loopback=allow_nl)
