# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)
"""Filters for per_service ACLs: which token each service of a host gets, which are stale.

A token is found again by its description, ``meshkit proxy <service id> on <host>``, so one
naming rule lives here and both the minting and the clean-up use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import (
    parse_mesh,
)
from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import (
    ModelError,
)

PREFIX = "meshkit proxy "


def description(service_id: str, host: str) -> str:
    return f"{PREFIX}{service_id} on {host}"


def mesh_acl_tokens(services: Any, host: str) -> list[dict[str, Any]]:
    """One token spec per service of ``host``: id, description, identities and policies."""
    items = services if isinstance(services, list) else [services]
    queries = [
        str(u.get("destination_name"))
        for s in items
        if isinstance(s, Mapping)
        for u in ((s.get("sidecar") or {}).get("upstreams") or [])
        if isinstance(u, Mapping)
    ]
    policies = [
        str(p)
        for s in items
        if isinstance(s, Mapping)
        for p in ((s.get("acl") or {}).get("policies") or [])
    ]
    try:
        mesh = parse_mesh(
            {"services": items, "acl_known_policies": policies},
            source="mesh_acl_tokens",
            known_queries=queries,
        )
    except ModelError as err:
        raise AnsibleFilterError(str(err)) from None
    out = []
    for svc in mesh.services:
        names = [svc.name] + [n for n in svc.acl.service_identities if n != svc.name]
        out.append(
            {
                "id": svc.id,
                "description": description(svc.id, host),
                "service_identities": [{"service_name": n} for n in names],
                "policies": list(svc.acl.policies),
            }
        )
    return out


def mesh_acl_stale_tokens(tokens: Any, wanted: Any, host: str) -> list[dict[str, Any]]:
    """Tokens minted for ``host`` earlier (by their description) that ``wanted`` no longer has,
    each with the ``service_id`` it was minted for: the prune deregisters that service with it
    before the token goes."""
    keep = {str(t.get("description")) for t in wanted or [] if isinstance(t, Mapping)}
    suffix = f" on {host}"
    return [
        dict(t, service_id=str(t["Description"])[len(PREFIX) : -len(suffix)])
        for t in tokens or []
        if isinstance(t, Mapping)
        and str(t.get("Description", "")).startswith(PREFIX)
        and str(t.get("Description", "")).endswith(suffix)
        and len(str(t.get("Description"))) > len(PREFIX) + len(suffix)
        and str(t.get("Description")) not in keep
    ]


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "mesh_acl_tokens": mesh_acl_tokens,
            "mesh_acl_stale_tokens": mesh_acl_stale_tokens,
        }
