"""ACLs, off by default: a master token and tokens with service identities (contract §2.6).

A service identity for `S` grants what Consul's does: `service:write` on `S` and
`S-sidecar-proxy`, read on every service and node. Everything else (intentions and query
writes, operator and agent endpoints, ACL management) needs the master token.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from meshkit.devagent.catalog import BadRequest, NotFound
from meshkit.devagent.store import Store

ANONYMOUS_ID = "00000000-0000-0000-0000-000000000002"


class Forbidden(PermissionError):
    """A 403 with Consul's text."""


@dataclass(frozen=True)
class Rights:
    management: bool = False
    write_services: frozenset[str] = field(default_factory=frozenset)
    read_all: bool = False

    def service_read(self, name: str) -> bool:
        return self.management or self.read_all or name in self.write_services

    def service_write(self, name: str) -> bool:
        return self.management or name in self.write_services


ALLOW_ALL = Rights(management=True)


def request_token(request: web.Request) -> str:
    """`?token=`, else `X-Consul-Token`, else `Authorization: Bearer` (agent/http.go order)."""
    token = request.query.get("token", "")
    if not token:
        token = request.headers.get("X-Consul-Token", "")
    if not token:
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
    return token


class ACL:
    def __init__(self, store: Store, master_token: str | None) -> None:
        self.store = store
        self.master = master_token
        self.enabled = bool(master_token)
        self.tokens: dict[str, dict[str, Any]] = store.items("acl_tokens")

    def rights(self, request: web.Request) -> Rights:
        if not self.enabled:
            return ALLOW_ALL
        secret = request_token(request)
        if not secret:
            return Rights()  # anonymous: default policy deny
        if secret == self.master:
            return ALLOW_ALL
        tok = self.by_secret(secret)
        if tok is None:
            raise Forbidden("ACL not found")
        if tok.get("Management"):
            return ALLOW_ALL
        names: set[str] = set()
        for ident in tok.get("ServiceIdentities") or []:
            names.add(ident["ServiceName"])
            names.add(ident["ServiceName"] + "-sidecar-proxy")
        return Rights(write_services=frozenset(names), read_all=bool(names))

    def by_secret(self, secret: str) -> dict[str, Any] | None:
        return next((t for t in self.tokens.values() if t["SecretID"] == secret), None)

    def index(self) -> int:
        return self.store.table_index(("acl",))

    def master_json(self) -> dict[str, Any]:
        return {
            "AccessorID": str(uuid.uuid5(uuid.NAMESPACE_OID, f"meshkit-master-{self.master}")),
            "SecretID": self.master,
            "Description": "Master Token",
            "Policies": [
                {"ID": "00000000-0000-0000-0000-000000000001", "Name": "global-management"}
            ],
            "Local": False,
            "CreateTime": "1970-01-01T00:00:00Z",
            "Hash": "",
            "CreateIndex": 1,
            "ModifyIndex": 1,
        }

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        allowed = {
            "AccessorID",
            "SecretID",
            "Description",
            "Policies",
            "Roles",
            "ServiceIdentities",
            "Local",
            "ExpirationTTL",
            "ExpirationTime",
        }
        for key in body:
            if key not in allowed:
                raise BadRequest(f'Request decode failed: json: unknown field "{key}"')
        if body.get("Roles"):
            raise BadRequest("Roles: ACL roles are not supported by meshkit dev-agent")
        management = False
        for pol in body.get("Policies") or []:
            if (
                pol.get("Name") == "global-management"
                or pol.get("ID") == "00000000-0000-0000-0000-000000000001"
            ):
                management = True
            else:
                raise BadRequest(
                    "Policies: only global-management is supported by meshkit dev-agent, "
                    f"got {pol!r}"
                )
        idents = []
        for i, ident in enumerate(body.get("ServiceIdentities") or []):
            if not isinstance(ident, dict) or not ident.get("ServiceName"):
                raise BadRequest(f"ServiceIdentities[{i}]: ServiceName is required")
            idents.append(
                {
                    "ServiceName": ident["ServiceName"],
                    **({"Datacenters": ident["Datacenters"]} if ident.get("Datacenters") else {}),
                }
            )
        accessor = body.get("AccessorID") or str(uuid.uuid4())
        if accessor in self.tokens:
            raise BadRequest("Invalid Token: AccessorID is already in use")
        index = self.store.index + 1
        tok: dict[str, Any] = {
            "AccessorID": accessor,
            "SecretID": body.get("SecretID") or str(uuid.uuid4()),
            "Description": body.get("Description") or "",
            **(
                {
                    "Policies": [
                        {"ID": "00000000-0000-0000-0000-000000000001", "Name": "global-management"}
                    ]
                }
                if management
                else {}
            ),
            **({"ServiceIdentities": idents} if idents else {}),
            "Local": bool(body.get("Local")),
            "CreateTime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "Management": management,
            "CreateIndex": index,
            "ModifyIndex": index,
        }
        tok["Hash"] = base64.b64encode(
            hashlib.sha256(repr(sorted(tok.items())).encode()).digest()
        ).decode()
        self.tokens[accessor] = tok
        self.store.put("acl_tokens", accessor, tok)
        self.store.bump("acl")
        return self.render(tok)

    @staticmethod
    def render(tok: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in tok.items() if k != "Management"}

    def get(self, accessor: str) -> dict[str, Any]:
        tok = self.tokens.get(accessor)
        if tok is None:
            raise Forbidden("ACL not found")
        return self.render(tok)

    def delete(self, accessor: str) -> None:
        if accessor not in self.tokens:
            raise NotFound("Cannot find token to delete")
        self.tokens.pop(accessor)
        self.store.delete("acl_tokens", accessor)
        self.store.bump("acl")

    def self_token(self, request: web.Request) -> dict[str, Any]:
        secret = request_token(request)
        if self.master and secret == self.master:
            return self.master_json()
        tok = self.by_secret(secret) if secret else None
        if tok is None:
            raise Forbidden("ACL not found")
        return self.render(tok)
