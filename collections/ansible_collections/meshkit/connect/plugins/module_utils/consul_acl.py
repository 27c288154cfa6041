# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)
"""Read Consul ACL tokens and policies and put them in one comparable shape.

Consul answers a read of an unknown token or policy ID with ``403 ACL not found``, the same
text it uses for a caller token it does not know. So the caller's token is checked first
(``/v1/acl/token/self``): once Consul knows it, ``ACL not found`` on a read means absent, and
only then. Secrets never enter the normalised views: they are what diffs and results are made
of.
"""

from __future__ import annotations

import json
from typing import Any

from ansible_collections.meshkit.connect.plugins.module_utils.consul_api import (
    ConsulClient,
    ConsulError,
    segment,
)

ACL_NOT_FOUND = "ACL not found"


class ACLInputError(ValueError):
    """Module input that cannot name one token or policy; the message names the option."""


def _not_found(err: ConsulError) -> bool:
    return err.status == 403 and ACL_NOT_FOUND in str(err)


def check_caller(client: ConsulClient) -> None:
    """Fail with a clear message when Consul does not know the token this module sends."""
    try:
        client.get("/v1/acl/token/self")
    except ConsulError as err:
        if _not_found(err):
            raise ConsulError(
                "GET",
                "/v1/acl/token/self",
                403,
                "ACL not found: Consul does not know the token given (option token, else "
                "CONSUL_HTTP_TOKEN, else CONSUL_HTTP_TOKEN_FILE); managing ACLs needs a token "
                "with acl:write, such as the management token",
            ) from None
        raise


def read_token(client: ConsulClient, accessor_id: str) -> dict[str, Any] | None:
    """The full token (SecretID included) or None when Consul has no token with this ID."""
    try:
        data = client.get(f"/v1/acl/token/{segment(accessor_id)}")
    except ConsulError as err:
        if _not_found(err):
            return None
        raise
    return data if isinstance(data, dict) else None


def find_token(client: ConsulClient, description: str) -> dict[str, Any] | None:
    """The one token whose Description is ``description`` (None when there is none)."""
    stubs = client.get("/v1/acl/tokens") or []
    found = [t for t in stubs if isinstance(t, dict) and t.get("Description") == description]
    if len(found) > 1:
        ids = ", ".join(str(t.get("AccessorID")) for t in found)
        raise ACLInputError(
            f"description: {len(found)} tokens are described {description!r} ({ids}); give "
            "accessor_id to say which one, or delete the others"
        )
    if not found:
        return None
    return read_token(client, str(found[0].get("AccessorID")))


def token_view(token: dict[str, Any]) -> dict[str, Any]:
    """What the module manages of a token, without its secret, sorted for comparison."""
    identities = []
    for ident in token.get("ServiceIdentities") or []:
        identities.append(
            {
                "service_name": str(ident.get("ServiceName", "")),
                "datacenters": sorted(ident.get("Datacenters") or []),
            }
        )
    return {
        "description": str(token.get("Description") or ""),
        "service_identities": sorted(identities, key=lambda i: i["service_name"]),
        "policies": sorted(str(p.get("Name", "")) for p in token.get("Policies") or []),
        "local": bool(token.get("Local")),
    }


def token_body(view: dict[str, Any], accessor_id: str | None) -> dict[str, Any]:
    """A token view as Consul's request body (no SecretID: Consul makes it)."""
    body: dict[str, Any] = {
        "Description": view["description"],
        "Local": view["local"],
        "Policies": [{"Name": name} for name in view["policies"]],
        "ServiceIdentities": [
            {
                "ServiceName": i["service_name"],
                **({"Datacenters": i["datacenters"]} if i["datacenters"] else {}),
            }
            for i in view["service_identities"]
        ],
    }
    if accessor_id:
        body["AccessorID"] = accessor_id
    return body


def find_policy(client: ConsulClient, name: str) -> dict[str, Any] | None:
    """The full policy called ``name``, or None (the list, then the policy by ID: Consul 1.7
    has no read by name)."""
    stubs = client.get("/v1/acl/policies") or []
    found = next((p for p in stubs if isinstance(p, dict) and p.get("Name") == name), None)
    if found is None:
        return None
    try:
        data = client.get(f"/v1/acl/policy/{segment(str(found.get('ID')))}")
    except ConsulError as err:
        if _not_found(err):
            return None
        raise
    return data if isinstance(data, dict) else None


def rules_text(rules: Any) -> str:
    """Rules as Consul stores them: HCL or JSON text as given, a mapping as stable JSON."""
    if rules is None:
        return ""
    if isinstance(rules, dict):
        return json.dumps(rules, sort_keys=True, indent=2)
    return str(rules)


def policy_view(policy: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": str(policy.get("Name") or ""),
        "description": str(policy.get("Description") or ""),
        "rules": str(policy.get("Rules") or ""),
        "datacenters": sorted(policy.get("Datacenters") or []),
    }


def policy_body(view: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Name": view["name"],
        "Description": view["description"],
        "Rules": view["rules"],
    }
    if view["datacenters"]:
        body["Datacenters"] = view["datacenters"]
    return body


def missing_policies(client: ConsulClient, names: list[str]) -> list[str]:
    """The names in ``names`` no policy has (checked before a token links them)."""
    stubs = client.get("/v1/acl/policies") or []
    have = {str(p.get("Name")) for p in stubs if isinstance(p, dict)}
    return [n for n in names if n not in have]


class PolicyStore:
    """One ACL policy, found by name; Consul addresses it by ID once it exists."""

    def __init__(self, client: ConsulClient, name: str) -> None:
        self.client, self.name = client, name
        self.id: str | None = None

    def read(self) -> dict[str, Any] | None:
        check_caller(self.client)  # so that "ACL not found" on a read means absent
        found = find_policy(self.client, self.name)
        if found is None:
            return None
        self.id = str(found.get("ID"))
        return policy_view(found)

    def write(self, view: dict[str, Any]) -> None:
        if self.id is None:
            made = self.client.put("/v1/acl/policy", policy_body(view)) or {}
            self.id = made.get("ID")
        else:
            body = dict(policy_body(view), ID=self.id)
            self.client.put(f"/v1/acl/policy/{segment(self.id)}", body)

    def delete(self) -> None:
        self.client.delete(f"/v1/acl/policy/{segment(str(self.id))}")
        self.id = None


class TokenStore:
    """One ACL token, by AccessorID or else by its (unique) description.

    A token named by an AccessorID Consul does not hold is created with that AccessorID. The
    SecretID is kept here for the module's result, never in the view. Reads assume the
    caller's token was checked first (``check_caller``), so that "ACL not found" means absent.
    """

    def __init__(self, client: ConsulClient, accessor_id: str | None, description: str) -> None:
        self.client, self.description = client, description
        self.accessor_id = accessor_id
        self.secret_id: str | None = None
        self.existing: dict[str, Any] | None = None

    def read(self) -> dict[str, Any] | None:
        if self.accessor_id:
            token = read_token(self.client, self.accessor_id)
        else:
            token = find_token(self.client, self.description)
        if token is None:
            return None
        self.accessor_id = str(token.get("AccessorID"))
        self.secret_id = token.get("SecretID")
        if self.secret_id == "<hidden>":
            raise ACLInputError(
                "token: Consul hid the token's SecretID, so the token this module sends has "
                "acl:read but not acl:write; use the management token"
            )
        self.existing = token_view(token)
        return self.existing

    def write(self, view: dict[str, Any]) -> None:
        if self.existing is None:
            made = self.client.put("/v1/acl/token", token_body(view, self.accessor_id)) or {}
            self.accessor_id = made.get("AccessorID")
            self.secret_id = made.get("SecretID")
            return
        if self.existing["local"] != view["local"]:
            raise ACLInputError(
                "local: Consul cannot change the locality of an existing token; delete it "
                "(state=absent) and create it again"
            )
        path = f"/v1/acl/token/{segment(str(self.accessor_id))}"
        made = self.client.put(path, token_body(view, self.accessor_id)) or {}
        self.secret_id = made.get("SecretID") or self.secret_id

    def delete(self) -> None:
        self.client.delete(f"/v1/acl/token/{segment(str(self.accessor_id))}")
        self.accessor_id = None
        self.secret_id = None
        self.existing = None

    def rotate(self, view: dict[str, Any]) -> None:
        """Same AccessorID, new SecretID: Consul refuses a SecretID change on update, so the
        token is deleted and made again with its AccessorID."""
        self.client.delete(f"/v1/acl/token/{segment(str(self.accessor_id))}")
        made = self.client.put("/v1/acl/token", token_body(view, self.accessor_id)) or {}
        self.secret_id = made.get("SecretID")
