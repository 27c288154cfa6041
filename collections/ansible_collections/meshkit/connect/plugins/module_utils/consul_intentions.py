# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)
"""Intentions through whichever API the agent has.

Consul 1.9 moved intentions into ``service-intentions`` config entries, which support
check-and-set; older agents only have the legacy ``/v1/connect/intentions`` API. Both are
reduced to one view: ``{source, destination, action, description}``.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.meshkit.connect.plugins.module_utils.consul_answers import (
    field_list,
    list_of_objects,
    object_or_none,
)
from ansible_collections.meshkit.connect.plugins.module_utils.consul_api import (
    ConsulClient,
    ConsulError,
    segment,
)

CONFIG_ENTRY_SINCE = (1, 9)
CAS_ATTEMPTS = 5

# Fields Consul fills in on entries and sources; sent back they are refused or meaningless.
_ENTRY_READ_ONLY = ("CreateIndex", "ModifyIndex", "Hash")
_SOURCE_READ_ONLY = ("Precedence", "LegacyID", "LegacyMeta", "LegacyCreateTime", "LegacyUpdateTime")


def choose_api(client: ConsulClient, api: str) -> str:
    if api != "auto":
        return api
    return "config_entry" if client.version() >= CONFIG_ENTRY_SINCE else "legacy"


def view(source: str, destination: str, action: str, description: str) -> dict[str, Any]:
    return {
        "source": source,
        "destination": destination,
        "action": action,
        "description": description,
    }


def list_legacy(client: ConsulClient) -> list[dict[str, Any]]:
    path = "/v1/connect/intentions"
    return list_of_objects(client.get(path), path)


def list_views(client: ConsulClient) -> list[dict[str, Any]]:
    """Every intention as a view (the legacy list is a view of both stores on every version)."""
    return sorted(
        (
            view(
                i.get("SourceName", ""),
                i.get("DestinationName", ""),
                i.get("Action", ""),
                i.get("Description", ""),
            )
            for i in list_legacy(client)
        ),
        key=lambda v: (v["destination"], v["source"]),
    )


class LegacyStore:
    """``/v1/connect/intentions``: one object per pair, addressed by ID."""

    def __init__(self, client: ConsulClient, source: str, destination: str) -> None:
        self.client, self.source, self.destination = client, source, destination
        self.id: str | None = None

    def read(self) -> dict[str, Any] | None:
        for item in list_legacy(self.client):
            if (
                item.get("SourceName") == self.source
                and item.get("DestinationName") == self.destination
            ):
                self.id = item.get("ID")
                return view(
                    self.source,
                    self.destination,
                    item.get("Action", ""),
                    item.get("Description", ""),
                )
        return None

    def write(self, view: dict[str, Any]) -> None:
        body = {
            "SourceName": self.source,
            "DestinationName": self.destination,
            "SourceType": "consul",
            "Action": view["action"],
            "Description": view["description"],
        }
        if self.id is None:
            self.id = (self.client.post("/v1/connect/intentions", body) or {}).get("ID")
        else:
            self.client.put(f"/v1/connect/intentions/{segment(self.id)}", body)

    def delete(self) -> None:
        if self.id is not None:
            self.client.delete(f"/v1/connect/intentions/{segment(self.id)}")


class ConfigEntryStore:
    """``service-intentions`` entries: one per destination, changed with check-and-set."""

    def __init__(self, client: ConsulClient, source: str, destination: str) -> None:
        self.client, self.source, self.destination = client, source, destination

    def _entry(self) -> dict[str, Any] | None:
        path = f"/v1/config/service-intentions/{segment(self.destination)}"
        return object_or_none(self.client.get(path, missing_ok=True), path)

    def read(self) -> dict[str, Any] | None:
        entry = self._entry()
        for src in field_list(entry, "Sources", "/v1/config/service-intentions"):
            if src.get("Name") == self.source and not src.get("Peer"):
                return view(
                    self.source, self.destination, src.get("Action", ""), src.get("Description", "")
                )
        return None

    def write(self, view: dict[str, Any]) -> None:
        self._set_source(view)

    def delete(self) -> None:
        """Remove this source; the entry goes with its last source."""
        self._set_source(None)

    def _set_source(self, want: dict[str, Any] | None) -> None:
        """Set (or with None remove) this source, retrying when another writer got there first."""
        for _attempt in range(CAS_ATTEMPTS):
            entry = self._entry()
            index = int((entry or {}).get("ModifyIndex") or 0)
            sources = [
                {k: v for k, v in src.items() if k not in _SOURCE_READ_ONLY}
                for src in field_list(entry, "Sources", "/v1/config/service-intentions")
                if not (src.get("Name") == self.source and not src.get("Peer"))
            ]
            if want is not None:
                sources.append(
                    {
                        "Name": self.source,
                        "Action": want["action"],
                        "Description": want["description"],
                        "Type": "consul",
                    }
                )
            sources.sort(key=lambda s: (s.get("Name") == "*", str(s.get("Name"))))
            if not sources:
                if entry is None:
                    return
                path = f"/v1/config/service-intentions/{segment(self.destination)}"
                ok = self.client.delete(path, query={"cas": str(index)})
            else:
                body = {k: v for k, v in (entry or {}).items() if k not in _ENTRY_READ_ONLY}
                body.update(Kind="service-intentions", Name=self.destination, Sources=sources)
                ok = self.client.put("/v1/config", body, query={"cas": str(index)})
            if ok is not False:
                return
        raise ConsulError(
            "PUT",
            "/v1/config",
            409,
            f"service-intentions {self.destination!r} kept changing under us; "
            f"gave up after {CAS_ATTEMPTS} check-and-set attempts",
        )


def intention_store(
    client: ConsulClient, api: str, source: str, destination: str
) -> LegacyStore | ConfigEntryStore:
    """The store of one intention through ``api`` (``config_entry`` or ``legacy``)."""
    store_cls = ConfigEntryStore if api == "config_entry" else LegacyStore
    return store_cls(client, source, destination)
