# SPDX-License-Identifier: MPL-2.0
"""What `Service.connect` and the HTTP client may be asked to reach, parsed once.

A plain name is a service; `Query("name")` a prepared query; a `ServiceID` a service whose
identity (datacenter included) is pinned. Host names of the `http://` client follow Consul's
DNS spelling: `<name>.service.consul`, `<name>.connect.consul`, `<name>.query.consul`, and
`<name>.service.<dc>.consul`.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshkit.resolver import PREPARED_QUERY, SERVICE
from meshkit.spiffe import ServiceID


@dataclass(frozen=True, slots=True)
class Query:
    """A prepared query, executed with `connect=true`."""

    name: str
    datacenter: str = ""


@dataclass(frozen=True, slots=True)
class Destination:
    """The one shape every form is reduced to: a discovery key plus an optional pinned ID."""

    kind: str  # resolver.SERVICE | resolver.PREPARED_QUERY
    name: str
    datacenter: str = ""
    pinned: ServiceID | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.name.lower(), self.datacenter.lower())

    def __str__(self) -> str:
        what = "prepared query" if self.kind == PREPARED_QUERY else "service"
        where = f" in {self.datacenter}" if self.datacenter else ""
        return f"{what} {self.name!r}{where}"


Target = str | Query | ServiceID | Destination


def destination_of(target: Target) -> Destination:
    """Reduce any accepted form to a Destination; raise ValueError naming the fix."""
    if isinstance(target, Destination):
        return target
    if isinstance(target, Query):
        _check_name(target.name, "prepared query")
        return Destination(PREPARED_QUERY, target.name, target.datacenter)
    if isinstance(target, ServiceID):
        _check_name(target.service, "service")
        return Destination(SERVICE, target.service, target.datacenter, pinned=target)
    if isinstance(target, str):
        return _from_host(target) or Destination(SERVICE, _check_name(target, "service"))
    raise TypeError(f"cannot connect to {target!r}: give a service name, Query(...) or ServiceID")


def destination_of_host(host: str) -> Destination:
    """An HTTP URL's host: Consul DNS spelling, or a bare service name."""
    found = _from_host(host.rstrip("."))
    if found is not None:
        return found
    return Destination(SERVICE, _check_name(host, "service"))


def _from_host(host: str) -> Destination | None:
    labels = host.lower().split(".")
    if len(labels) < 3 or labels[-1] != "consul":
        return None
    name, kind = labels[0], labels[1]
    dc = labels[2] if len(labels) == 4 else ""
    if len(labels) > 4:
        raise ValueError(f"{host!r}: expected <name>.service[.<dc>].consul")
    if kind in ("service", "connect"):
        return Destination(SERVICE, _check_name(name, "service"), dc)
    if kind == "query":
        return Destination(PREPARED_QUERY, _check_name(name, "prepared query"), dc)
    raise ValueError(f"{host!r}: use <name>.service.consul, .connect.consul or .query.consul")


def _check_name(name: str, what: str) -> str:
    if not name or "/" in name or any(c.isspace() for c in name) or "." in name:
        raise ValueError(f"{name!r} is not a valid {what} name (no dots, slashes or spaces)")
    return name
