#!/usr/bin/python
# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)

from __future__ import annotations

DOCUMENTATION = r"""
module: consul_prepared_query
short_description: Manage a Consul prepared query by name
version_added: 0.1.0
description:
  - Creates, updates or deletes one prepared query of the mesh model, found by its name
    (Consul itself only addresses queries by ID, so the module lists C(/v1/query) and matches).
  - Compares every field the model sets, so a second run reports no change.
author:
  - meshkit contributors (@meshkit)
extends_documentation_fragment:
  - meshkit.connect.attributes
  - meshkit.connect.consul
  - meshkit.connect.consul.ACTIONGROUP_CONSUL
attributes:
  diff_mode:
    description: C(before) and C(after) hold exactly the fields of the query that differ.
options:
  state:
    description: V(present) creates or updates, V(absent) deletes.
    type: str
    choices: [present, absent]
    default: present
  query:
    description:
      - One item of C(meshkit_prepared_queries) (C(name), C(service), C(tags),
        C(only_passing), C(near), C(failover.nearest_n), C(failover.datacenters), C(connect)).
      - Required when O(state=present).
    type: dict
    # mesh schema: QUERY (written by .ci/mesh-schema from mesh_schema.py)
    suboptions:
      name:
        description: Query name, unique; an upstream names it.
        type: str
      service:
        description: The service the query finds.
        type: str
      tags:
        description: Tags the instances must have.
        type: list
        elements: str
      only_passing:
        description: Only passing instances (default V(true)).
        type: bool
      near:
        description: Sort by distance, e.g. V(_agent).
        type: str
      failover:
        description: Other datacenters to try.
        type: dict
        suboptions:
          nearest_n:
            description: The N nearest other datacenters.
            type: int
          datacenters:
            description: Explicit list.
            type: list
            elements: str
      connect:
        description: Results are Connect-capable instances (default V(true)).
        type: bool
    # end mesh schema
  name:
    description: Name of the query to delete when O(state=absent) and O(query) is not given.
    type: str
"""

EXAMPLES = r"""
- name: Create the prepared queries of the mesh
  meshkit.connect.consul_prepared_query:
    query: "{{ item }}"
  loop: "{{ meshkit_prepared_queries }}"
  loop_control:
    label: "{{ item.name }}"

- name: Remove a query
  meshkit.connect.consul_prepared_query:
    state: absent
    name: db-nearest
"""

RETURN = r"""
query:
  description: The normalised query body after the run; null when absent.
  returned: always
  type: dict
  sample:
    Name: db-nearest
    Service:
      Service: db
      Failover: {NearestN: 0, Datacenters: []}
      OnlyPassing: true
      Near: _agent
      Tags: []
      Connect: true
id:
  description: Consul's ID of the query.
  returned: when the query exists after the run (not in check mode before creation)
  type: str
  sample: 8f246b77-f3e1-ff88-5b48-8ec93abf3e05
operation:
  description: What was (or in check mode would be) done.
  returned: changed
  type: str
  sample: create
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.meshkit.connect.plugins.module_utils.consul_lifecycle import (
    Lifecycle,
    connection_argspec,
    run_lifecycle,
)
from ansible_collections.meshkit.connect.plugins.module_utils.consul_queries import QueryStore
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import (
    PreparedQuery,
    parse_mesh,
)
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_render import (
    prepared_query_body,
)
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_schema import (
    QUERY,
    argspec,
    drop_unset,
)


class QueryLifecycle(Lifecycle):
    result_key = "query"

    def __init__(self, module: AnsibleModule) -> None:
        super().__init__(module)
        self.query: PreparedQuery | None = None
        if module.params["query"] is not None:
            mesh = parse_mesh(
                {"prepared_queries": [module.params["query"]]}, source="consul_prepared_query"
            )
            self.query = mesh.prepared_queries[0]
        name = self.query.name if self.query is not None else module.params["name"]
        self.store: QueryStore = QueryStore(self.client, name)

    def desired(self) -> dict[str, Any] | None:
        if self.module.params["state"] == "absent" or self.query is None:
            return None
        return prepared_query_body(self.query)

    def extra_result(self, final: dict[str, Any] | None) -> dict[str, Any]:
        return {"id": self.store.id} if final is not None and self.store.id else {}


def main() -> None:
    module = AnsibleModule(
        argument_spec=connection_argspec(
            state={"type": "str", "choices": ["present", "absent"], "default": "present"},
            query={"type": "dict", "options": argspec(QUERY)},
            name={"type": "str"},
        ),
        required_if=[("state", "present", ["query"])],
        required_one_of=[("query", "name")],
        supports_check_mode=True,
    )
    module.params["query"] = drop_unset(module.params["query"], QUERY)
    run_lifecycle(QueryLifecycle, module)


if __name__ == "__main__":
    main()
