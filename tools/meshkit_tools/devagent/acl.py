# SPDX-License-Identifier: MPL-2.0
"""ACLs, off by default: tokens and policies as Consul 1.7 keeps them.

With `-acl-master-token` the agent resolves every request's token to an Authorizer
(aclrules.py): the master token and tokens linked to `global-management` may do anything; any
other token gets the rules of its policies plus those its service identities synthesize
(`service:write` on `S` and `S-sidecar-proxy`, read on every service and node); whatever no rule
covers falls to `-acl-default-policy` (deny unless told otherwise). No token means the anonymous
token (its policies can be edited like any other's). Texts and status codes are Consul's:
`403 ACL not found` for a token that does not exist, `403 Permission denied` for a missing
right, and ACL object reads of unknown IDs answer `403 ACL not found` too.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import uuid
from typing import Any

from aiohttp import web

from meshkit_tools.devagent.aclrules import Authorizer, PolicyRules, RulesError, parse
from meshkit_tools.devagent.aclrules import service_identity_rules as _identity_rules
from meshkit_tools.devagent.catalog import BadRequest
from meshkit_tools.devagent.store import Store

ANONYMOUS_ID = "00000000-0000-0000-0000-000000000002"
ANONYMOUS_SECRET = "anonymous"
MANAGEMENT_ID = "00000000-0000-0000-0000-000000000001"
MANAGEMENT_NAME = "global-management"
TOKENS, POLICIES = "acl_tokens", "acl_policies"
_NAME = re.compile(r"^[A-Za-z0-9\-_]{1,128}$")
_SERVICE_NAME = re.compile(r"^[a-z0-9]([a-z0-9\-_]*[a-z0-9])?$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
TOKEN_FIELDS = frozenset(
    {
        "AccessorID",
        "SecretID",
        "Description",
        "Policies",
        "Roles",
        "ServiceIdentities",
        "Local",
        "ExpirationTTL",
        "ExpirationTime",
        "CreateTime",
        "Hash",
        "CreateIndex",
        "ModifyIndex",
        "Namespace",
    }
)
POLICY_FIELDS = frozenset(
    {"ID", "Name", "Description", "Rules", "Datacenters", "Hash", "CreateIndex", "ModifyIndex"}
)


class Forbidden(PermissionError):
    """A 403 with Consul's text."""


class ACLServerError(RuntimeError):
    """Consul answers these RPC errors with a 500 and the error's text."""


# Kept for callers that spell it the old way: a token's rights are an Authorizer.
Rights = Authorizer
ALLOW_ALL = Authorizer(default_allow=True, management=True)


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


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _hash(obj: dict[str, Any], keys: tuple[str, ...]) -> str:
    raw = repr([(k, obj.get(k)) for k in keys]).encode()
    return base64.b64encode(hashlib.sha256(raw).digest()).decode()


class ACL:
    def __init__(self, store: Store, master_token: str | None, default_allow: bool = False) -> None:
        self.store = store
        self.master = master_token
        self.enabled = bool(master_token)
        self.default_allow = default_allow
        self.tokens: dict[str, dict[str, Any]] = store.items(TOKENS)
        self.policies: dict[str, dict[str, Any]] = store.items(POLICIES)
        self._parsed: dict[str, PolicyRules] = {}
        if self.enabled:
            self._bootstrap()

    # -- built-ins ----------------------------------------------------------------------------

    def _bootstrap(self) -> None:
        """global-management, the anonymous token and the master token, once per data dir."""
        changed = False
        if MANAGEMENT_ID not in self.policies:
            index = self.store.index + 1
            pol = {
                "ID": MANAGEMENT_ID,
                "Name": MANAGEMENT_NAME,
                "Description": "Builtin Policy that grants unlimited access",
                "Rules": "",
                "Datacenters": None,
                "CreateIndex": index,
                "ModifyIndex": index,
            }
            pol["Hash"] = _hash(pol, ("Name", "Description", "Rules"))
            self.policies[MANAGEMENT_ID] = pol
            self.store.put(POLICIES, MANAGEMENT_ID, pol)
            changed = True
        if ANONYMOUS_ID not in self.tokens:
            self._store_token(self._new_token(ANONYMOUS_ID, ANONYMOUS_SECRET, "Anonymous Token"))
            changed = True
        master = next((t for t in self.tokens.values() if t.get("Master")), None)
        if master is None or master["SecretID"] != self.master:
            if master is not None:  # the master token changed between runs
                self._drop_token(master["AccessorID"])
            tok = self._new_token(str(uuid.uuid4()), str(self.master), "Master Token")
            tok["Policies"] = [{"ID": MANAGEMENT_ID, "Name": MANAGEMENT_NAME}]
            tok["Master"] = True
            self._store_token(tok)
            changed = True
        if changed:
            self.store.bump("acl")

    def _new_token(self, accessor: str, secret: str, description: str) -> dict[str, Any]:
        index = self.store.index + 1
        return {
            "AccessorID": accessor,
            "SecretID": secret,
            "Description": description,
            "Local": False,
            "CreateTime": _now(),
            "CreateIndex": index,
            "ModifyIndex": index,
        }

    def _store_token(self, tok: dict[str, Any]) -> None:
        tok["Hash"] = _hash(tok, ("Description", "Policies", "ServiceIdentities", "Local"))
        self.tokens[tok["AccessorID"]] = tok
        self.store.put(TOKENS, tok["AccessorID"], tok)

    def _drop_token(self, accessor: str) -> None:
        self.tokens.pop(accessor, None)
        self.store.delete(TOKENS, accessor)

    # -- resolution ---------------------------------------------------------------------------

    def by_secret(self, secret: str) -> dict[str, Any] | None:
        return next((t for t in self.tokens.values() if t["SecretID"] == secret), None)

    def resolve(self, secret: str) -> Authorizer:
        """A secret -> its Authorizer; Forbidden("ACL not found") for an unknown one."""
        if not self.enabled:
            return ALLOW_ALL
        tok = self.by_secret(secret or ANONYMOUS_SECRET)
        if tok is None:
            raise Forbidden("ACL not found")
        rules: list[PolicyRules] = []
        management = False
        for link in self._links(tok):
            if link["ID"] == MANAGEMENT_ID:
                management = True
            else:
                rules.append(self._rules(self.policies[link["ID"]]))
        for ident in tok.get("ServiceIdentities") or []:
            rules.append(_identity_rules(ident["ServiceName"]))
        return Authorizer.build(rules, self.default_allow, management)

    def rights(self, request: web.Request) -> Authorizer:
        return self.resolve(request_token(request))

    def _rules(self, pol: dict[str, Any]) -> PolicyRules:
        text = pol.get("Rules") or ""
        if text not in self._parsed:
            self._parsed[text] = parse(text)
        return self._parsed[text]

    def _links(self, tok: dict[str, Any]) -> list[dict[str, str]]:
        """The token's policy links that still exist, with their current names."""
        out = []
        for link in tok.get("Policies") or []:
            pol = self.policies.get(link["ID"])
            if pol is not None:
                out.append({"ID": pol["ID"], "Name": pol["Name"]})
        return out

    def index(self) -> int:
        return self.store.table_index(("acl",))

    # -- tokens -------------------------------------------------------------------------------

    def render(self, tok: dict[str, Any], secret: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"AccessorID": tok["AccessorID"]}
        if secret:
            out["SecretID"] = tok["SecretID"]
        out["Description"] = tok.get("Description") or ""
        links = self._links(tok)
        if links:
            out["Policies"] = links
        if tok.get("ServiceIdentities"):
            out["ServiceIdentities"] = [dict(i) for i in tok["ServiceIdentities"]]
        out["Local"] = bool(tok.get("Local"))
        for key in ("CreateTime", "Hash", "CreateIndex", "ModifyIndex"):
            out[key] = tok[key]
        return out

    def _policy_links(self, raw: Any) -> list[dict[str, str]]:
        links: list[dict[str, str]] = []
        for link in raw or []:
            if not isinstance(link, dict):
                raise BadRequest("Request decode failed: Policies: expected objects")
            pid, name = link.get("ID") or "", link.get("Name") or ""
            if pid:
                pol = self.policies.get(pid)
                if pol is None:
                    raise ACLServerError(f"cannot find policy {pid}")
            else:
                pol = next((p for p in self.policies.values() if p["Name"] == name), None)
                if pol is None:
                    raise ACLServerError(f"cannot find policy {name}")
            if all(x["ID"] != pol["ID"] for x in links):
                links.append({"ID": pol["ID"], "Name": pol["Name"]})
        return links

    @staticmethod
    def _identities(raw: Any, local: bool) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for ident in raw or []:
            if not isinstance(ident, dict):
                raise BadRequest("Request decode failed: ServiceIdentities: expected objects")
            name = ident.get("ServiceName") or ""
            if not name:
                raise ACLServerError(
                    "Service identity is missing the service name field on this token"
                )
            if not _SERVICE_NAME.match(name):
                raise ACLServerError(
                    f'Service identity "{name}" has an invalid name. Only alphanumeric '
                    "characters, '-' and '_' are allowed"
                )
            dcs = list(ident.get("Datacenters") or [])
            if local and dcs:
                raise ACLServerError(
                    f'Service identity "{name}" cannot specify a list of datacenters on a '
                    "local token"
                )
            entry: dict[str, Any] = {"ServiceName": name, **({"Datacenters": dcs} if dcs else {})}
            if entry not in out:
                out.append(entry)
        return out

    @staticmethod
    def _check_fields(body: dict[str, Any], allowed: frozenset[str]) -> None:
        for key in body:
            if key not in allowed:
                raise BadRequest(f'Request decode failed: json: unknown field "{key}"')

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check_fields(body, TOKEN_FIELDS)
        if body.get("Roles"):
            raise BadRequest("Roles: ACL roles are not supported by meshkit dev-agent")
        accessor = body.get("AccessorID") or str(uuid.uuid4())
        if not _UUID.match(accessor):
            raise ACLServerError("Invalid Token: AccessorID is not a valid UUID")
        if accessor in self.tokens:
            raise ACLServerError("Invalid Token: AccessorID is already in use")
        secret = body.get("SecretID") or str(uuid.uuid4())
        if not _UUID.match(secret):
            raise ACLServerError("Invalid Token: SecretID is not a valid UUID")
        if self.by_secret(secret) is not None:
            raise ACLServerError("Invalid Token: SecretID is already in use")
        local = bool(body.get("Local"))
        tok = self._new_token(accessor, secret, str(body.get("Description") or ""))
        tok["Local"] = local
        links = self._policy_links(body.get("Policies"))
        idents = self._identities(body.get("ServiceIdentities"), local)
        if links:
            tok["Policies"] = links
        if idents:
            tok["ServiceIdentities"] = idents
        self._store_token(tok)
        self.store.bump("acl")
        return self.render(tok)

    def update(self, accessor: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check_fields(body, TOKEN_FIELDS)
        if body.get("AccessorID") and body["AccessorID"] != accessor:
            raise BadRequest("Token Accessor ID in URL and payload do not match")
        if body.get("Roles"):
            raise BadRequest("Roles: ACL roles are not supported by meshkit dev-agent")
        old = self.tokens.get(accessor)
        if old is None:
            raise ACLServerError(f'Cannot find token "{accessor}"')
        if body.get("SecretID") and body["SecretID"] != old["SecretID"]:
            raise ACLServerError("Changing a tokens SecretID is not permitted")
        if "Local" in body and bool(body["Local"]) != bool(old.get("Local")):
            raise ACLServerError(f"Cannot toggle local mode of {accessor}")
        if (
            old.get("Master")
            and body.get("Policies") is not None
            and all(
                (p.get("ID") or "") != MANAGEMENT_ID and p.get("Name") != MANAGEMENT_NAME
                for p in body["Policies"] or []
            )
        ):
            raise ACLServerError("Master token must keep the global-management policy")
        tok = dict(old)
        tok["Description"] = str(body.get("Description") or "")
        links = self._policy_links(body.get("Policies"))
        idents = self._identities(body.get("ServiceIdentities"), bool(old.get("Local")))
        tok.pop("Policies", None)
        tok.pop("ServiceIdentities", None)
        if links:
            tok["Policies"] = links
        if idents:
            tok["ServiceIdentities"] = idents
        tok["ModifyIndex"] = self.store.index + 1
        self._store_token(tok)
        self.store.bump("acl")
        return self.render(tok)

    def get(self, accessor: str) -> dict[str, Any]:
        tok = self.tokens.get(accessor)
        if tok is None:
            raise Forbidden("ACL not found")
        return self.render(tok)

    def delete(self, accessor: str, caller_secret: str) -> None:
        tok = self.tokens.get(accessor)
        if tok is None:
            return  # nothing to delete: Consul answers true
        if accessor == ANONYMOUS_ID:
            raise ACLServerError("Delete operation not permitted on the anonymous token")
        if tok["SecretID"] == caller_secret or tok.get("Master"):
            raise ACLServerError("Deletion of the request's authorization token is not permitted")
        self._drop_token(accessor)
        self.store.bump("acl")

    def listing(self, policy: str = "") -> list[dict[str, Any]]:
        """Stubs without secrets: tokens made through the API first, then the built-ins.

        Consul orders by SecretID, which is random for every token it mints, so no client can
        rely on an order; this one is stable and matches the recorded answer.
        """
        rows = sorted(
            self.tokens.values(),
            key=lambda t: (
                2 if t.get("Master") else 1 if t["AccessorID"] == ANONYMOUS_ID else 0,
                t["CreateIndex"],
            ),
        )
        out = []
        for tok in rows:
            if policy and all(link["ID"] != policy for link in self._links(tok)):
                continue
            out.append(self.render(tok, secret=False))
        return out

    def self_token(self, request: web.Request) -> dict[str, Any]:
        secret = request_token(request)
        tok = self.by_secret(secret) if secret else None
        if tok is None:
            raise Forbidden("ACL not found")
        return self.render(tok)

    # -- policies -----------------------------------------------------------------------------

    def render_policy(self, pol: dict[str, Any], stub: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ID": pol["ID"],
            "Name": pol["Name"],
            "Description": pol.get("Description") or "",
        }
        if not stub:
            out["Rules"] = pol.get("Rules") or ""
        dcs = pol.get("Datacenters") or None
        if stub or dcs:
            out["Datacenters"] = dcs
        for key in ("Hash", "CreateIndex", "ModifyIndex"):
            out[key] = pol[key]
        return out

    def _validate_policy(self, body: dict[str, Any], pid: str) -> dict[str, Any]:
        self._check_fields(body, POLICY_FIELDS)
        name = body.get("Name") or ""
        if not name:
            raise ACLServerError("Invalid Policy: no Name is set")
        if not _NAME.match(name):
            raise ACLServerError(
                "Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are "
                "allowed"
            )
        other = next((p for p in self.policies.values() if p["Name"] == name), None)
        if other is not None and other["ID"] != pid:
            raise ACLServerError(f'Invalid Policy: A Policy with Name "{name}" already exists')
        rules = body.get("Rules") or ""
        if not isinstance(rules, str):
            raise BadRequest("Request decode failed: Rules: expected a string")
        try:
            self._parsed[rules] = parse(rules)
        except RulesError as exc:
            raise ACLServerError(str(exc)) from None
        dcs = body.get("Datacenters") or None
        if dcs is not None and (
            not isinstance(dcs, list) or not all(isinstance(d, str) and d for d in dcs)
        ):
            raise BadRequest("Request decode failed: Datacenters: expected a list of names")
        return {
            "Name": name,
            "Description": body.get("Description") or "",
            "Rules": rules,
            "Datacenters": dcs,
        }

    def policy_create(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("ID"):
            raise BadRequest("Cannot specify an ID in ACL policy creation")
        fields = self._validate_policy(body, "")
        index = self.store.index + 1
        pol = {"ID": str(uuid.uuid4()), **fields, "CreateIndex": index, "ModifyIndex": index}
        return self._store_policy(pol)

    def policy_update(self, pid: str, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("ID") and body["ID"] != pid:
            raise BadRequest("Policy ID in URL and payload do not match")
        old = self.policies.get(pid)
        if old is None:
            raise ACLServerError(f"Cannot find policy {pid}")
        fields = self._validate_policy(body, pid)
        if pid == MANAGEMENT_ID:
            if fields["Rules"] != old["Rules"]:
                raise ACLServerError(
                    "Changing the Rules for the builtin global-management policy is not permitted"
                )
            if fields["Datacenters"]:
                raise ACLServerError(
                    "Changing the Datacenters of the builtin global-management policy is not "
                    "permitted"
                )
        pol = {**old, **fields, "ModifyIndex": self.store.index + 1}
        return self._store_policy(pol)

    def _store_policy(self, pol: dict[str, Any]) -> dict[str, Any]:
        pol["Hash"] = _hash(pol, ("Name", "Description", "Rules", "Datacenters"))
        self.policies[pol["ID"]] = pol
        self.store.put(POLICIES, pol["ID"], pol)
        self.store.bump("acl")
        return self.render_policy(pol)

    def policy_get(self, pid: str) -> dict[str, Any]:
        pol = self.policies.get(pid)
        if pol is None:
            raise Forbidden("ACL not found")
        return self.render_policy(pol)

    def policy_by_name(self, name: str) -> dict[str, Any]:
        pol = next((p for p in self.policies.values() if p["Name"] == name), None)
        if pol is None:
            raise Forbidden("ACL not found")
        return self.render_policy(pol)

    def policy_delete(self, pid: str) -> None:
        if pid == MANAGEMENT_ID:
            raise ACLServerError(
                "Delete operation not permitted on the builtin global-management policy"
            )
        if pid not in self.policies:
            return
        self.policies.pop(pid)
        self.store.delete(POLICIES, pid)
        self.store.bump("acl")

    def policy_listing(self) -> list[dict[str, Any]]:
        return [self.render_policy(p, stub=True) for _, p in sorted(self.policies.items())]
