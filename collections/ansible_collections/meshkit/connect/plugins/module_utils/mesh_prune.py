# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)
"""What a prune may remove: the drift's extras minus everything the model still uses.

``consul_mesh_info`` lists what Consul holds beyond the model (``drift.<kind>.extra``). Not all
of it is unused: a prepared query defined outside the inventory (``known_queries``) is named by
an upstream, an intention written by hand is what lets an upstream's traffic through. Deleting
those breaks the mesh while the model still relies on them, so the plan keeps every object a
service or upstream of the model uses and says which one uses it; the rest may go.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import Service

PREPARED_QUERY = "prepared_query"


def _users(services: Sequence[Service]) -> tuple[dict[str, list[str]], list[tuple[str, str, str]]]:
    """Queries by name → who names them; (source, destination, who) per service upstream."""
    queries: dict[str, list[str]] = {}
    pairs: list[tuple[str, str, str]] = []
    for svc in services:
        if svc.sidecar is None:
            continue
        for up in svc.sidecar.upstreams:
            who = f"an upstream of service {svc.name!r} ({svc.id})"
            if up.destination_type == PREPARED_QUERY:
                queries.setdefault(up.destination_name, []).append(who)
            else:
                pairs.append((svc.name, up.destination_name, who))
    return queries, pairs


def _matches(pattern: str, name: str) -> bool:
    return pattern == "*" or pattern == name


def prune_plan(drift: Mapping[str, Any], services: Sequence[Service]) -> dict[str, Any]:
    """``{"prepared_queries": [...], "intentions": [...], "kept": [...]}``: what may be removed,
    and one line per object kept because the model still uses it (naming it and its user)."""
    queries, pairs = _users(services)
    kept: list[str] = []
    remove_queries: list[str] = []
    for name in (drift.get("prepared_queries") or {}).get("extra") or []:
        if name in queries:
            kept.append(f"prepared query {name!r} kept: still named by {', '.join(queries[name])}")
        else:
            remove_queries.append(name)
    remove_intentions: list[str] = []
    for text in (drift.get("intentions") or {}).get("extra") or []:
        source, _arrow, destination = str(text).partition(" -> ")
        users = [
            who for src, dst, who in pairs if _matches(source, src) and _matches(destination, dst)
        ]
        if users:
            kept.append(
                f"intention {text!r} kept: it decides the traffic of {', '.join(users)}; "
                "put it in meshkit_intentions to manage it"
            )
        else:
            remove_intentions.append(str(text))
    return {
        "prepared_queries": remove_queries,
        "intentions": remove_intentions,
        "kept": kept,
    }
