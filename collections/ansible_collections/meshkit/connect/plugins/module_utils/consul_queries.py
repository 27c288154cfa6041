# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)
"""Prepared queries by name: Consul only addresses them by ID, so list and match."""

from __future__ import annotations

from typing import Any

from ansible_collections.meshkit.connect.plugins.module_utils.consul_answers import (
    field_object,
    list_of_objects,
)
from ansible_collections.meshkit.connect.plugins.module_utils.consul_api import (
    ConsulClient,
    segment,
)


def list_queries(client: ConsulClient) -> list[dict[str, Any]]:
    return list_of_objects(client.get("/v1/query"), "/v1/query")


def find_query(queries: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    for query in queries:
        if query.get("Name") == name:
            return query
    return None


def query_view(query: dict[str, Any]) -> dict[str, Any]:
    """The fields of a stored query that ``prepared_query_body`` sets, null lists as []."""
    svc = field_object(query, "Service")
    failover = field_object(svc, "Failover")
    return {
        "Name": query.get("Name", ""),
        "Service": {
            "Service": svc.get("Service", ""),
            "Failover": {
                "NearestN": failover.get("NearestN") or 0,
                "Datacenters": list(failover.get("Datacenters") or []),
            },
            "OnlyPassing": bool(svc.get("OnlyPassing")),
            "Near": svc.get("Near") or "",
            "Tags": list(svc.get("Tags") or []),
            "Connect": bool(svc.get("Connect")),
        },
    }


class QueryStore:
    """One prepared query, found by name; created with POST, then addressed by its ID."""

    def __init__(self, client: ConsulClient, name: str) -> None:
        self.client, self.name = client, name
        self.id: str | None = None

    def read(self) -> dict[str, Any] | None:
        found = find_query(list_queries(self.client), self.name)
        if found is None:
            return None
        self.id = found.get("ID")
        return query_view(found)

    def write(self, view: dict[str, Any]) -> None:
        if self.id is None:
            created = self.client.post("/v1/query", view)
            self.id = created.get("ID") if isinstance(created, dict) else None
        else:
            self.client.put(f"/v1/query/{segment(self.id)}", dict(view, ID=self.id))

    def delete(self) -> None:
        if self.id is None:
            raise AssertionError("id is known after read")
        self.client.delete(f"/v1/query/{segment(self.id)}")
        self.id = None
