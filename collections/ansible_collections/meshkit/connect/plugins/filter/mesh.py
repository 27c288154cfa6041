# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)
"""Filters over the mesh model: validate it, and render it into the forms Consul accepts.

They run the same parser and renderers as the modules and ``meshkit render``, so a template
that writes ``/etc/consul.d`` and a module that calls the API can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible.utils.display import Display

from ansible_collections.meshkit.connect.plugins.module_utils.mesh_defaults import (
    config_entries,
)
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_listeners import host_listeners
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import (
    Mesh,
    as_plain,
    parse_mesh,
)
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_prune import prune_plan
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_render import (
    agent_config_file,
    agent_registration,
    intention_body,
    intentions_config_entries,
    prepared_query_body,
)
from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import (
    ModelError,
)


def _parse(data: Mapping[str, Any], what: str, known_queries: Any = ()) -> Mesh:
    try:
        mesh = parse_mesh(data, source=what, known_queries=list(known_queries or ()))
    except ModelError as err:
        raise AnsibleFilterError(str(err)) from None
    for warning in mesh.warnings:  # older Consul proxy forms, converted
        Display().warning(warning)
    return mesh


def _services(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


def mesh_validate(data: Mapping[str, Any], known_queries: Any = ()) -> Any:
    """The whole model, validated, with every default filled in."""
    return as_plain(_parse(data, "mesh_validate", known_queries))


def mesh_agent_registration(service: Mapping[str, Any]) -> Any:
    mesh = _parse({"services": [service]}, "mesh_agent_registration", _any_query(service))
    return agent_registration(mesh.services[0])


def mesh_agent_config(services: Any) -> str:
    items = _services(services)
    known = [n for s in items for n in _any_query(s)]
    return agent_config_file(_parse({"services": items}, "mesh_agent_config", known).services)


def mesh_prepared_query_body(query: Mapping[str, Any]) -> Any:
    mesh = _parse({"prepared_queries": [query]}, "mesh_prepared_query_body")
    return prepared_query_body(mesh.prepared_queries[0])


def mesh_intention_body(intention: Mapping[str, Any]) -> Any:
    return intention_body(_parse({"intentions": [intention]}, "mesh_intention_body").intentions[0])


def mesh_intention_entries(intentions: Any) -> Any:
    mesh = _parse({"intentions": intentions}, "mesh_intention_entries")
    return intentions_config_entries(mesh.intentions)


def mesh_listeners(services: Any) -> Any:
    """Every fixed listener of one host's services (for loopback and port audits)."""
    items = _services(services)
    known = [n for s in items for n in _any_query(s)]
    mesh = _parse({"services": items}, "mesh_listeners", known)
    return [
        {"address": x.address, "port": x.port, "owner": x.owner, "kind": x.kind}
        for x in host_listeners(mesh.services)
    ]


def mesh_config_entries(data: Mapping[str, Any]) -> Any:
    """proxy_defaults and the services' defaults as consul_config_entry options, validated."""
    try:
        return config_entries(data, source="mesh_config_entries")
    except ModelError as err:
        raise AnsibleFilterError(str(err)) from None


def _any_query(service: Any) -> list[str]:
    """Query names a lone service's upstreams use: their existence is checked elsewhere."""
    if not isinstance(service, Mapping):
        return []
    ups = (service.get("sidecar") or {}).get("upstreams") or []
    return [str(u.get("destination_name")) for u in ups if isinstance(u, Mapping)]


def mesh_prune_plan(drift: Mapping[str, Any], services: Any) -> Any:
    """What a prune may remove from ``consul_mesh_info``'s drift, keeping what ``services``
    (every host's, so one host never prunes what another still uses) still use."""
    parsed = [
        _parse({"services": [item]}, "mesh_prune_plan", _any_query(item)).services[0]
        for item in _services(services or [])
        if item
    ]  # one by one: two hosts may list the same service (instances on different agents)
    return prune_plan(drift or {}, parsed)


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "mesh_validate": mesh_validate,
            "mesh_agent_registration": mesh_agent_registration,
            "mesh_agent_config": mesh_agent_config,
            "mesh_prepared_query_body": mesh_prepared_query_body,
            "mesh_intention_body": mesh_intention_body,
            "mesh_intention_entries": mesh_intention_entries,
            "mesh_listeners": mesh_listeners,
            "mesh_prune_plan": mesh_prune_plan,
            "mesh_config_entries": mesh_config_entries,
        }
