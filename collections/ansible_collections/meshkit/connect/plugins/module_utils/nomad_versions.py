# SPDX-License-Identifier: MPL-2.0
"""Which Nomad release understands which job field.

Nomad's HTTP decoder drops keys it does not know, so a job using a field newer than the
target cluster registers fine and then behaves differently (an upstream silently pointing at
a service instead of a prepared query). We refuse such jobs before they leave the controller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+][0-9A-Za-z.+-]*)?$")


@dataclass(frozen=True, order=True)
class NomadVersion:
    major: int
    minor: int
    patch: int = 0

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def parse_nomad_version(text: object) -> NomadVersion:
    """`1.6.2`, `v1.7.0`, `1.8.0-beta.1` or `1.7` (patch 0); ValueError otherwise."""
    match = _VERSION_RE.match(str(text).strip()) if isinstance(text, (str, int, float)) else None
    if match is None:
        raise ValueError(f"{text!r} is not a Nomad version such as 1.7.7")
    major, minor, patch = match.groups()
    return NomadVersion(int(major), int(minor), int(patch or 0))


@dataclass(frozen=True)
class Feature:
    """A job field or behaviour and the first Nomad release that honours it."""

    key: str
    since: NomadVersion
    what: str
    fix: str


FEATURES: dict[str, Feature] = {
    f.key: f
    for f in (
        Feature(
            "connect",
            NomadVersion(0, 10, 0),
            "Consul Connect (sidecar_service, sidecar_task, upstreams)",
            "upgrade Nomad to 0.10.0 or later",
        ),
        Feature(
            "native",
            NomadVersion(0, 12, 0),
            "connect { native = true } with a service task",
            "upgrade Nomad to 0.12.0 or later, or use nomad.pattern: sidecar",
        ),
        Feature(
            "native_bridge",
            NomadVersion(0, 12, 2),
            "Connect native services in bridge networking",
            "upgrade Nomad to 0.12.2 or later, or use nomad.network_mode: host",
        ),
        Feature(
            "bridge_loopback_exec",
            NomadVersion(1, 3, 2),
            "meshkit-proxy under the exec driver in bridge networking (before 1.3.2 Nomad "
            "leaves the namespace's lo interface down for non-Docker tasks, hashicorp/nomad "
            "issue 10014, and exec cannot bring it up)",
            "use job.proxy.driver: raw_exec with proxy.command a wrapper that runs "
            "`ip link set lo up` first (docs/nomad.md), or upgrade Nomad to 1.3.2 or later",
        ),
        Feature(
            "upstream_datacenter",
            NomadVersion(1, 0, 0),
            "upstream datacenter",
            "upgrade Nomad to 1.0.0 or later, use nomad.pattern: native (the proxy resolves "
            "the datacenter itself), or drop the upstream's datacenter",
        ),
        Feature(
            "upstream_local_bind_address",
            NomadVersion(1, 1, 0),
            "upstream local_bind_address other than 127.0.0.1",
            "upgrade Nomad to 1.1.0 or later, use nomad.pattern: native, or bind the upstream "
            "on 127.0.0.1",
        ),
        Feature(
            "upstream_config",
            NomadVersion(1, 5, 0),
            "upstream config",
            "upgrade Nomad to 1.5.0 or later, use nomad.pattern: native, or drop the "
            "upstream's config",
        ),
        Feature(
            "prepared_query_upstream",
            NomadVersion(1, 6, 2),
            "upstream destination_type prepared_query",
            "upgrade Nomad to 1.6.2 or later, or use nomad.pattern: native (meshkit-proxy "
            "executes the prepared query itself)",
        ),
    )
}

# What we assume when rendering without a cluster to ask and no nomad_version given.
DEFAULT_VERSION = NomadVersion(1, 7, 7)


def refusal(key: str, version: NomadVersion) -> str | None:
    """The refusal text when `version` lacks feature `key`, else None."""
    feature = FEATURES[key]
    if version >= feature.since:
        return None
    return (
        f"{feature.what} needs Nomad >= {feature.since}, but nomad_version is {version}; "
        "older Nomad drops the field without an error and runs something else"
    )


def supports(key: str, version: NomadVersion) -> bool:
    return version >= FEATURES[key].since
