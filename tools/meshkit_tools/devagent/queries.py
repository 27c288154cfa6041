# SPDX-License-Identifier: MPL-2.0
"""Prepared queries: definitions, execution by ID or name, and the response shape.

`Near` is accepted and stored but ignored at execution: there is one node, so there is
nothing to sort by round-trip time (the results are shuffled as Consul does without it).
"""

from __future__ import annotations

import logging
import random
import uuid
from typing import Any

from meshkit_tools.devagent.catalog import (
    CRITICAL,
    PASSING,
    BadRequest,
    NotFound,
    Service,
    node_service,
    render_check,
)
from meshkit_tools.devagent.state import State
from meshkit_tools.devagent.store import Store

TABLES = ("queries",)
log = logging.getLogger("meshkit_tools.devagent.queries")


def render(q: dict[str, Any]) -> dict[str, Any]:
    """A stored definition with every default Consul spells out."""
    svc = q.get("Service") or {}
    tmpl = q.get("Template") or {}
    failover = svc.get("Failover") or {}
    return {
        "ID": q["ID"],
        "Name": q.get("Name") or "",
        "Session": q.get("Session") or "",
        "Token": q.get("Token") or "",
        "Template": {
            "Type": tmpl.get("Type") or "",
            "Regexp": tmpl.get("Regexp") or "",
            "RemoveEmptyTags": bool(tmpl.get("RemoveEmptyTags")),
        },
        "Service": {
            "Service": svc.get("Service") or "",
            "Failover": {
                "NearestN": failover.get("NearestN") or 0,
                "Datacenters": failover.get("Datacenters"),
            },
            "OnlyPassing": bool(svc.get("OnlyPassing")),
            "IgnoreCheckIDs": svc.get("IgnoreCheckIDs"),
            "Near": svc.get("Near") or "",
            "Tags": svc.get("Tags"),
            "NodeMeta": svc.get("NodeMeta"),
            "ServiceMeta": svc.get("ServiceMeta"),
            "Connect": bool(svc.get("Connect")),
        },
        "DNS": {"TTL": (q.get("DNS") or {}).get("TTL") or ""},
        "CreateIndex": q["CreateIndex"],
        "ModifyIndex": q["ModifyIndex"],
    }


class Queries:
    def __init__(self, store: Store, state: State) -> None:
        self.store = store
        self.state = state
        self.items: dict[str, dict[str, Any]] = store.items("queries")
        self._near_noted: set[str] = set()

    def index(self) -> int:
        return self.store.table_index(TABLES)

    def _validate(self, body: dict[str, Any], own_id: str) -> None:
        svc = body.get("Service") or {}
        if not svc.get("Service"):
            raise BadRequest("Must provide a Service name to query")
        tmpl = (body.get("Template") or {}).get("Type") or ""
        if tmpl not in ("", "name_prefix_match"):
            raise BadRequest(f"Bad Template.Type {tmpl!r}")
        name = body.get("Name") or ""
        for other in self.items.values():
            if name and other.get("Name") == name and other["ID"] != own_id:
                raise BadRequest(f"Name {name!r} aliases an existing query name")
        if (svc.get("Failover") or {}).get("Datacenters"):
            raise BadRequest("Failover.Datacenters: meshkit dev-agent has a single datacenter")

    def create(self, body: dict[str, Any]) -> str:
        if body.get("ID"):
            raise BadRequest("ID must be empty when creating a new prepared query")
        qid = str(uuid.uuid4())
        self._validate(body, qid)
        self._put(qid, body, None)
        return qid

    def update(self, qid: str, body: dict[str, Any]) -> None:
        old = self.items.get(qid)
        if old is None:
            raise NotFound("Query not found")
        self._validate(body, qid)
        self._put(qid, body, old)

    def _put(self, qid: str, body: dict[str, Any], old: dict[str, Any] | None) -> None:
        index = self.store.index + 1
        q = {
            **body,
            "ID": qid,
            "CreateIndex": old["CreateIndex"] if old else index,
            "ModifyIndex": index,
        }
        self.items[qid] = q
        self.store.put("queries", qid, q)
        self.store.bump(*TABLES)

    def delete(self, qid: str) -> None:
        if qid not in self.items:
            raise NotFound("Query not found")
        self.items.pop(qid)
        self.store.delete("queries", qid)
        self.store.bump(*TABLES)

    def get(self, qid: str) -> dict[str, Any]:
        q = self.items.get(qid)
        if q is None:
            raise NotFound("Query not found")
        return q

    def listing(self) -> list[dict[str, Any]]:
        return sorted(self.items.values(), key=lambda q: (q.get("Name") or "", q["ID"]))

    def resolve(self, id_or_name: str) -> tuple[dict[str, Any], str]:
        """The query and the service it targets (templates interpolated)."""
        q = self.items.get(id_or_name)
        if q is None:
            q = next(
                (
                    x
                    for x in self.items.values()
                    if x.get("Name") == id_or_name and not (x.get("Template") or {}).get("Type")
                ),
                None,
            )
        if q is not None:
            return q, q["Service"]["Service"]
        best: dict[str, Any] | None = None
        for x in self.items.values():
            if (x.get("Template") or {}).get("Type") == "name_prefix_match":
                prefix = x.get("Name") or ""
                if id_or_name.startswith(prefix) and (
                    best is None or len(prefix) > len(best.get("Name") or "")
                ):
                    best = x
        if best is None:
            raise NotFound("Query not found")
        prefix = best.get("Name") or ""
        service = (
            best["Service"]["Service"]
            .replace("${name.full}", id_or_name)
            .replace("${name.prefix}", prefix)
            .replace("${name.suffix}", id_or_name[len(prefix) :])
        )
        return best, service

    def execute(self, id_or_name: str, *, connect: bool, limit: int) -> dict[str, Any]:
        q, service = self.resolve(id_or_name)
        spec = q.get("Service") or {}
        if spec.get("Near") and q["ID"] not in self._near_noted:
            self._near_noted.add(q["ID"])
            log.info(
                "prepared query %s: Near=%r ignored (one node, nothing to sort)",
                q["ID"],
                spec["Near"],
            )
        found = self.state.by_name(service, connect=connect or bool(spec.get("Connect")))
        ignore = tuple(spec.get("IgnoreCheckIDs") or ())
        rows = [s for s in found if self._keep(s, spec, ignore)]
        random.shuffle(rows)
        if limit > 0:
            rows = rows[:limit]
        nodes = []
        for svc in rows:
            checks = self.state.entry_checks(svc)
            nodes.append(
                {
                    "Node": self.state.node.render(),
                    "Service": node_service(svc, query=True),
                    "Checks": [
                        render_check(c, self.state.node.name, svc.tags, query=True) for c in checks
                    ],
                }
            )
        return {
            "Service": service,
            "Nodes": nodes,
            "DNS": {"TTL": (q.get("DNS") or {}).get("TTL") or ""},
            "Datacenter": self.state.node.datacenter,
            "Failovers": 0,
            "Index": 0,
            "LastContact": 0,
            "KnownLeader": True,
            "ConsistencyLevel": "leader",
        }

    def _keep(self, svc: Service, spec: dict[str, Any], ignore: tuple[str, ...]) -> bool:
        statuses = [c.status for c in self.state.entry_checks(svc) if c.check_id not in ignore]
        if spec.get("OnlyPassing"):
            if any(s != PASSING for s in statuses):
                return False
        elif CRITICAL in statuses:
            return False
        tags = {t.lower() for t in svc.tags}
        for tag in spec.get("Tags") or []:
            if tag.startswith("!"):
                if tag[1:].lower() in tags:
                    return False
            elif tag.lower() not in tags:
                return False
        for key, value in (spec.get("ServiceMeta") or {}).items():
            if svc.meta.get(key) != value:
                return False
        return True
