# SPDX-License-Identifier: MPL-2.0
"""Intentions: one store behind the legacy API and `service-intentions` config entries.

Precedence, matching and the authorize reasons follow Consul 1.7 so a proxy
deciding locally from `/match` and one calling `/v1/agent/connect/authorize` agree.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import uuid
from typing import Any

from meshkit_tools.devagent.catalog import BadRequest, NotFound
from meshkit_tools.devagent.store import Store

TABLES = ("intentions",)
DEFAULT_NS = "default"


def now_nano() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def precedence(src_ns: str, src: str, dst_ns: str, dst: str) -> int:
    """Consul's 1-9 table: exact values beat wildcards, destination first."""
    dst_level = 3 if dst != "*" else (2 if dst_ns != "*" else 1)
    src_level = 3 if src != "*" else (2 if src_ns != "*" else 1)
    return (dst_level - 1) * 3 + src_level


def _hash(ixn: dict[str, Any]) -> str:
    parts = [
        ixn["SourceNS"],
        ixn["SourceName"],
        ixn["DestinationNS"],
        ixn["DestinationName"],
        ixn["SourceType"],
        ixn["Action"],
        ixn["Description"],
        repr(sorted(ixn["Meta"].items())),
    ]
    return base64.b64encode(hashlib.sha256("\x00".join(parts).encode()).digest()).decode()


def describe(ixn: dict[str, Any]) -> str:
    return (
        f"{ixn['Action'].upper()} {ixn['SourceNS']}/{ixn['SourceName']} => "
        f"{ixn['DestinationNS']}/{ixn['DestinationName']} "
        f"(ID: {ixn['ID']}, Precedence: {ixn['Precedence']})"
    )


class Intentions:
    def __init__(
        self, store: Store, default_allow: bool, explicit_default: bool, acls: bool
    ) -> None:
        self.store = store
        self.default_allow = default_allow
        self.explicit_default = explicit_default
        self.acls = acls
        self.items: dict[str, dict[str, Any]] = store.items("intentions")

    def index(self) -> int:
        return self.store.table_index(TABLES)

    def _validate(self, body: dict[str, Any]) -> dict[str, Any]:
        ixn: dict[str, Any] = {
            "ID": body.get("ID") or "",
            "Description": body.get("Description") or "",
            "SourceNS": body.get("SourceNS") or DEFAULT_NS,
            "SourceName": body.get("SourceName") or "",
            "DestinationNS": body.get("DestinationNS") or DEFAULT_NS,
            "DestinationName": body.get("DestinationName") or "",
            "SourceType": body.get("SourceType") or "consul",
            "Action": body.get("Action") or "",
            "DefaultAddr": body.get("DefaultAddr") or "",
            "DefaultPort": body.get("DefaultPort") or 0,
            "Meta": dict(body.get("Meta") or {}),
        }
        for side in ("Source", "Destination"):
            name, ns = ixn[f"{side}Name"], ixn[f"{side}NS"]
            if not name:
                raise BadRequest(f"Invalid intention: {side}Name must be set")
            for label, value in (("NS", ns), ("Name", name)):
                if "*" in value and value != "*":
                    raise BadRequest(
                        f"Invalid intention: {side}{label} wildcard character '*' cannot be used "
                        "with partial values"
                    )
            if ns == "*" and name != "*":
                raise BadRequest(f"Invalid intention: {side}Name must be '*' when {side}NS is '*'")
            if ns not in (DEFAULT_NS, "*"):
                raise BadRequest(
                    f"Invalid intention: {side}NS must be 'default' (namespaces are Enterprise)"
                )
        if ixn["Action"] not in ("allow", "deny"):
            raise BadRequest("Invalid intention: Action must be set to 'allow' or 'deny'")
        if ixn["SourceType"] != "consul":
            raise BadRequest("Invalid intention: SourceType must be set to 'consul'")
        if len(ixn["Meta"]) > 64:
            raise BadRequest("Invalid intention: Meta must contain at most 64 keys")
        ixn["Precedence"] = precedence(
            ixn["SourceNS"], ixn["SourceName"], ixn["DestinationNS"], ixn["DestinationName"]
        )
        return ixn

    def _find_pair(self, ixn: dict[str, Any]) -> dict[str, Any] | None:
        for other in self.items.values():
            if all(
                other[k] == ixn[k]
                for k in ("SourceNS", "SourceName", "DestinationNS", "DestinationName")
            ):
                return other
        return None

    def create(self, body: dict[str, Any]) -> str:
        if body.get("ID"):
            raise BadRequest("ID must be empty when creating a new intention")
        ixn = self._validate(body)
        dup = self._find_pair(ixn)
        if dup is not None:
            raise BadRequest(f"duplicate intention found: {describe(dup)}")
        ixn["ID"] = str(uuid.uuid4())
        self._store(ixn, None)
        return str(ixn["ID"])

    def update(self, ixn_id: str, body: dict[str, Any]) -> None:
        old = self.items.get(ixn_id)
        if old is None:
            raise NotFound(f"Cannot modify non-existent intention: '{ixn_id}'")
        if body.get("ID") and body["ID"] != ixn_id:
            raise BadRequest("ID in body does not match ID in path")
        ixn = self._validate({**body, "ID": ixn_id})
        dup = self._find_pair(ixn)
        if dup is not None and dup["ID"] != ixn_id:
            raise BadRequest(f"duplicate intention found: {describe(dup)}")
        self._store(ixn, old)

    def upsert_exact(self, source: str, destination: str, body: dict[str, Any]) -> None:
        probe = self._validate({**body, "SourceName": source, "DestinationName": destination})
        old = self._find_pair(probe)
        probe["ID"] = old["ID"] if old else str(uuid.uuid4())
        self._store(probe, old)

    def _store(self, ixn: dict[str, Any], old: dict[str, Any] | None) -> None:
        index = self.store.index + 1
        stamp = now_nano()
        ixn["CreatedAt"] = old["CreatedAt"] if old else stamp
        ixn["UpdatedAt"] = stamp
        ixn["Hash"] = _hash(ixn)
        ixn["CreateIndex"] = old["CreateIndex"] if old else index
        ixn["ModifyIndex"] = index
        self.items[ixn["ID"]] = ixn
        self.store.put("intentions", ixn["ID"], ixn)
        self.store.bump(*TABLES)

    def delete(self, ixn_id: str) -> None:
        if ixn_id not in self.items:
            raise NotFound(f"Cannot delete non-existent intention: '{ixn_id}'")
        self._drop([ixn_id])

    def _drop(self, ids: list[str]) -> None:
        for i in ids:
            self.items.pop(i, None)
            self.store.delete("intentions", i)
        self.store.bump(*TABLES)

    def get(self, ixn_id: str) -> dict[str, Any]:
        ixn = self.items.get(ixn_id)
        if ixn is None:
            raise NotFound("Intention not found")
        return ixn

    def exact(self, source: str, destination: str) -> dict[str, Any]:
        probe = {
            "SourceNS": DEFAULT_NS,
            "SourceName": source,
            "DestinationNS": DEFAULT_NS,
            "DestinationName": destination,
        }
        found = self._find_pair(probe)
        if found is None:
            raise NotFound("Intention not found")
        return found

    def listing(self) -> list[dict[str, Any]]:
        return sorted(self.items.values(), key=_order)

    def match(self, by: str, name: str) -> list[dict[str, Any]]:
        """Intentions that apply to `name` on side `by`, in evaluation order."""
        field = "DestinationName" if by == "destination" else "SourceName"
        return sorted((i for i in self.items.values() if i[field] in (name, "*")), key=_order)

    def decide(self, source: str, destination: str) -> tuple[bool, str]:
        for ixn in self.match("destination", destination):
            if ixn["SourceName"] in (source, "*"):
                return ixn["Action"] == "allow", f"Matched intention: {describe(ixn)}"
        if self.explicit_default:
            return self.default_allow, "Default intention policy"
        if self.acls:
            return self.default_allow, "Default behavior configured by ACLs"
        return self.default_allow, (
            "ACLs disabled, access is allowed by default"
            if self.default_allow
            else "Default intention policy"
        )

    # -- service-intentions config entries --------------------------------------------------

    def entry(self, destination: str) -> dict[str, Any]:
        found = [
            i for i in self.match("destination", destination) if i["DestinationName"] == destination
        ]
        if not found:
            raise NotFound(f'Config entry not found for "service-intentions" / "{destination}"')
        return {
            "Kind": "service-intentions",
            "Name": destination,
            "Sources": [
                {
                    "Name": i["SourceName"],
                    "Action": i["Action"],
                    "Precedence": i["Precedence"],
                    "Type": i["SourceType"],
                    **({"Description": i["Description"]} if i["Description"] else {}),
                    "LegacyID": i["ID"],
                    "LegacyMeta": i["Meta"],
                    "LegacyCreateTime": i["CreatedAt"],
                    "LegacyUpdateTime": i["UpdatedAt"],
                }
                for i in found
            ],
            "CreateIndex": min(i["CreateIndex"] for i in found),
            "ModifyIndex": max(i["ModifyIndex"] for i in found),
        }

    def entries(self) -> list[dict[str, Any]]:
        names = sorted({i["DestinationName"] for i in self.items.values()})
        return [self.entry(n) for n in names]

    def put_entry(self, body: dict[str, Any]) -> None:
        allowed = {"Kind", "Name", "Sources", "Meta", "Namespace", "CreateIndex", "ModifyIndex"}
        for key in body:
            if key not in allowed:
                raise BadRequest(f'Request decode failed: json: unknown field "{key}"')
        name = body.get("Name") or ""
        if not name:
            raise BadRequest("Name is required")
        sources = body.get("Sources") or []
        if not isinstance(sources, list):
            raise BadRequest("Sources must be a list")
        src_keys = {
            "Name",
            "Namespace",
            "Action",
            "Permissions",
            "Description",
            "Type",
            "Precedence",
            "LegacyID",
            "LegacyMeta",
            "LegacyCreateTime",
            "LegacyUpdateTime",
        }
        validated = []
        seen: set[str] = set()
        for i, src in enumerate(sources):
            if not isinstance(src, dict):
                raise BadRequest(f"Sources[{i}] must be an object")
            for key in src:
                if key not in src_keys:
                    raise BadRequest(f'Request decode failed: json: unknown field "{key}"')
            if src.get("Permissions"):
                raise BadRequest(
                    f"Sources[{i}].Permissions: L7 permissions are not supported "
                    "by meshkit dev-agent"
                )
            if src.get("Name") in seen:
                raise BadRequest(f"Sources[{i}].Name {src.get('Name')!r} is listed more than once")
            seen.add(str(src.get("Name")))
            try:
                validated.append(
                    self._validate(
                        {
                            "SourceName": src.get("Name"),
                            "DestinationName": name,
                            "Action": src.get("Action"),
                            "Description": src.get("Description"),
                            "SourceType": src.get("Type") or "consul",
                            "Meta": src.get("LegacyMeta") or {},
                        }
                    )
                )
            except BadRequest as exc:
                raise BadRequest(f"Sources[{i}]: {exc}") from None
        current = {i["SourceName"]: i for i in self.items.values() if i["DestinationName"] == name}
        for gone in set(current) - seen:
            self.items.pop(current[gone]["ID"], None)
            self.store.delete("intentions", current[gone]["ID"])
        for ixn in validated:
            old = current.get(ixn["SourceName"])
            ixn["ID"] = old["ID"] if old else str(uuid.uuid4())
            self._store(ixn, old)
        self.store.bump(*TABLES)

    def delete_entry(self, destination: str) -> None:
        self._drop([i["ID"] for i in self.items.values() if i["DestinationName"] == destination])


def _order(ixn: dict[str, Any]) -> tuple[int, int, str, str, str]:
    """Highest precedence first; at equal precedence deny wins."""
    deny_first = 0 if ixn["Action"] == "deny" else 1
    return (
        -int(ixn["Precedence"]),
        deny_first,
        ixn["SourceName"],
        ixn["DestinationName"],
        ixn["ID"],
    )
