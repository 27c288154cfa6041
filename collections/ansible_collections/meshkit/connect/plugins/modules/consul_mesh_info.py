#!/usr/bin/python
# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)

from __future__ import annotations

DOCUMENTATION = r"""
module: consul_mesh_info
short_description: Report what Consul holds for the mesh, and how it drifts from the model
version_added: 0.1.0
description:
  - Reads the services (with their sidecars and upstreams) registered on the local agent, the
    prepared queries and the intentions.
  - Given O(mesh), reports drift, what exists in Consul but not in the model, what the model
    has that Consul lacks, and what differs. It never deletes or changes anything.
author:
  - meshkit contributors (@meshkit)
extends_documentation_fragment:
  - meshkit.connect.attributes.INFO_MODULE
  - meshkit.connect.consul
  - meshkit.connect.consul.ACTIONGROUP_CONSUL
options:
  mesh:
    description:
      - The mesh model of this host, C(services), C(prepared_queries), C(intentions) and
        C(datacenter), or the same keys with the C(meshkit_) prefix of the inventory variables.
      - When omitted, only what Consul holds is returned.
    type: dict
"""

EXAMPLES = r"""
- name: Compare Consul with the model of this host
  meshkit.connect.consul_mesh_info:
    mesh:
      services: "{{ meshkit_services }}"
      prepared_queries: "{{ meshkit_prepared_queries }}"
      intentions: "{{ meshkit_intentions }}"
  register: mesh_info

- name: Fail on services registered outside the model
  ansible.builtin.assert:
    that: mesh_info.drift.services.extra | length == 0
    fail_msg: "Not in the model: {{ mesh_info.drift.services.extra }}"
"""

RETURN = r"""
services:
  description: Services on the agent (sidecars nested under their parent), by ID.
  returned: always
  type: dict
  sample: {db: {ID: db, Name: db, Port: 5432, Address: 127.0.0.1, Tags: [], Meta: {}}}
prepared_queries:
  description: Prepared queries, normalised, each with its C(ID).
  returned: always
  type: list
  elements: dict
intentions:
  description: Intentions as C(source), C(destination), C(action), C(description).
  returned: always
  type: list
  elements: dict
drift:
  description:
    - For C(services) (by ID), C(prepared_queries) (by name) and C(intentions)
      (as C(source -> destination)), the lists C(extra) (in Consul, not in the model),
      C(missing) (in the model, not in Consul) and C(differ) (in both, not equal).
  returned: when O(mesh) is given
  type: dict
  sample:
    services: {extra: [legacy-app], missing: [], differ: [web]}
    prepared_queries: {extra: [], missing: [db-nearest], differ: []}
    intentions: {extra: ["* -> db"], missing: [], differ: []}
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.meshkit.connect.plugins.module_utils.consul_answers import (
    map_of_objects,
)
from ansible_collections.meshkit.connect.plugins.module_utils.consul_intentions import (
    list_views,
    view,
)
from ansible_collections.meshkit.connect.plugins.module_utils.consul_lifecycle import (
    client_for,
    connection_argspec,
    failures_reported,
)
from ansible_collections.meshkit.connect.plugins.module_utils.consul_queries import (
    list_queries,
    query_view,
)
from ansible_collections.meshkit.connect.plugins.module_utils.consul_services import (
    desired_view,
    read_view,
)
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import (
    parse_mesh,
)
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_render import (
    prepared_query_body,
)


def _drift(have: dict[str, Any], want: dict[str, Any]) -> dict[str, list[str]]:
    return {
        "extra": sorted(set(have) - set(want)),
        "missing": sorted(set(want) - set(have)),
        "differ": sorted(k for k in set(have) & set(want) if have[k] != want[k]),
    }


def gather(module: AnsibleModule) -> dict[str, Any]:
    client = client_for(module)
    queries = list_queries(client)
    mesh = None
    if module.params["mesh"] is not None:
        mesh = parse_mesh(
            module.params["mesh"],
            source="consul_mesh_info",
            known_queries=[str(q.get("Name", "")) for q in queries],
        )
    wanted = {s.id: s for s in mesh.services} if mesh else {}
    agent = map_of_objects(client.get("/v1/agent/services"), "/v1/agent/services")
    checks = map_of_objects(client.get("/v1/agent/checks"), "/v1/agent/checks")
    sidecar_ids = {
        sid
        for sid, svc in agent.items()
        if svc.get("Kind") == "connect-proxy"
        and f"{sid}".endswith("-sidecar-proxy")
        and sid[: -len("-sidecar-proxy")] in agent
    }
    services: dict[str, Any] = {}
    for sid in sorted(agent):
        if sid in sidecar_ids:
            continue
        found = read_view(client, sid, wanted.get(sid), checks, agent)
        if found is not None:
            services[sid] = found
    result: dict[str, Any] = {
        "changed": False,
        "services": services,
        "prepared_queries": [dict(query_view(q), ID=q.get("ID", "")) for q in queries],
        "intentions": list_views(client),
    }
    if mesh is not None:
        have_q = {q["Name"]: query_view(q) for q in queries}
        want_q = {q.name: prepared_query_body(q) for q in mesh.prepared_queries}
        have_i = {f"{i['source']} -> {i['destination']}": i for i in result["intentions"]}
        want_i = {
            f"{i.source} -> {i.destination}": view(i.source, i.destination, i.action, i.description)
            for i in mesh.intentions
        }
        result["drift"] = {
            "services": _drift(services, {s.id: desired_view(s) for s in mesh.services}),
            "prepared_queries": _drift(have_q, want_q),
            "intentions": _drift(have_i, want_i),
        }
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=connection_argspec(mesh={"type": "dict"}),
        supports_check_mode=True,
    )
    with failures_reported(module):
        result = gather(module)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
