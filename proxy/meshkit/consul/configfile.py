# SPDX-License-Identifier: MPL-2.0
"""Consul mode from a file: `meshkit-proxy -config FILE` where the file says `mode: consul`.

Flags cannot carry an upstream's datacenter or per-upstream timeouts; a file written by a
Nomad `template` block can. The shape is the static file's (docs/proxy.md) minus what Consul
supplies (tls, authorization, targets), and it parses into the same `Registration` the flag
mode builds, so everything after this point is shared. Unknown keys are errors naming the key
and the file, all collected before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from meshkit import bounded, fields
from meshkit.config import DEFAULT_DRAIN_TIMEOUT_MS, ConfigError
from meshkit.consul.registration import Registration

TOP_KEYS = {
    "mode",
    "service",
    "public_listener",
    "upstreams",
    "admin",
    "drain_timeout_ms",
    "allow_non_loopback_service",
}
ADMIN_KEYS = {"bind"}


@dataclass(frozen=True, slots=True)
class ConsulFile:
    """What a Consul-mode file adds to the command line."""

    registration: Registration
    admin: tuple[str, int] | None
    drain_timeout_ms: float
    allow_non_loopback_service: bool
    source: str


def load(path_text: str) -> ConsulFile:
    """Parse and validate the whole file; ConfigError lists every problem."""
    path = Path(path_text)
    p = fields.Problems(str(path))
    try:
        raw = bounded.load_yaml(path)
    except bounded.FileError as exc:
        raise ConfigError([str(exc)]) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: the top level must be a mapping"])
    fields.check_keys(p, "", raw, TOP_KEYS)
    if raw.get("mode") != "consul":
        p.add("mode", f"must be consul in a Consul-mode file, got {raw.get('mode')!r}")
    service = fields.string(p, "service", raw.get("service"))
    if "service" not in raw:
        p.add("service", "missing: the service this proxy represents")

    public = fields.public_listener(
        p, fields.section(p, raw, "public_listener", fields.PUBLIC_KEYS)
    )
    upstreams = fields.upstreams(
        p,
        raw.get("upstreams"),
        lambda where, item: fields.upstream(p, where, item, allowed=fields.UPSTREAM_KEYS),
    )

    admin_data = fields.section(p, raw, "admin", ADMIN_KEYS)
    admin = fields.hostport(p, "admin.bind", admin_data.get("bind"))
    drain = fields.millis(
        p, "drain_timeout_ms", raw.get("drain_timeout_ms"), DEFAULT_DRAIN_TIMEOUT_MS
    )
    allow_nl = fields.boolean(
        p, "allow_non_loopback_service", raw.get("allow_non_loopback_service")
    )
    if p.items:
        raise ConfigError(p.items)
    assert service is not None
    reg = Registration(
        proxy_id="", service=service, service_id=service, public=public, upstreams=upstreams
    )
    return ConsulFile(reg, admin, drain, allow_nl, str(path))
