#!/usr/bin/python
# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)

from __future__ import annotations

DOCUMENTATION = r"""
module: consul_intention
short_description: Manage one Consul intention (source to destination, allow or deny)
version_added: 0.1.0
description:
  - Creates, updates or deletes the intention from O(source) to O(destination).
  - On Consul 1.9 and later it edits the destination's C(service-intentions) config entry with
    check-and-set, so concurrent writers do not lose each other's sources; on older agents it
    uses the legacy C(/v1/connect/intentions) API. The choice is made from the version in
    C(/v1/agent/self) unless O(api) says otherwise.
author:
  - meshkit contributors (@meshkit)
extends_documentation_fragment:
  - meshkit.connect.attributes
  - meshkit.connect.consul
  - meshkit.connect.consul.ACTIONGROUP_CONSUL
options:
  state:
    description: V(present) creates or updates, V(absent) deletes.
    type: str
    choices: [present, absent]
    default: present
  source:
    description: Source service name, or V(*) for every service.
    type: str
    required: true
  destination:
    description: Destination service name (never V(*)).
    type: str
    required: true
  action:
    description: Whether connections from O(source) to O(destination) are allowed.
    type: str
    choices: [allow, deny]
    default: allow
  description:
    description: Free text stored with the intention.
    type: str
    default: ""
  api:
    description:
      - V(auto) picks V(config_entry) on Consul 1.9 and later, V(legacy) before.
    type: str
    choices: [auto, config_entry, legacy]
    default: auto
"""

EXAMPLES = r"""
- name: Apply the intentions of the mesh
  meshkit.connect.consul_intention:
    source: "{{ item.source }}"
    destination: "{{ item.destination }}"
    action: "{{ item.action | default('allow') }}"
    description: "{{ item.description | default('') }}"
  loop: "{{ meshkit_intentions }}"

- name: Deny everything to db by default
  meshkit.connect.consul_intention:
    source: "*"
    destination: db
    action: deny
"""

RETURN = r"""
intention:
  description: The intention after the run; null when absent.
  returned: always
  type: dict
  sample: {source: web, destination: db, action: allow, description: web reads db}
api:
  description: Which API was used.
  returned: always
  type: str
  sample: config_entry
operation:
  description: What was (or in check mode would be) done.
  returned: changed
  type: str
  sample: update
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.meshkit.connect.plugins.module_utils.consul_intentions import (
    choose_api,
    intention_store,
    view,
)
from ansible_collections.meshkit.connect.plugins.module_utils.consul_lifecycle import (
    Lifecycle,
    connection_argspec,
    run_lifecycle,
)
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import parse_mesh


class IntentionLifecycle(Lifecycle):
    result_key = "intention"

    def __init__(self, module: AnsibleModule) -> None:
        super().__init__(module)
        p = module.params
        keys = ("source", "destination", "action", "description")
        mesh = parse_mesh({"intentions": [{k: p[k] for k in keys}]}, source="consul_intention")
        self.intention = mesh.intentions[0]
        self.api = choose_api(self.client, p["api"])
        self.store = intention_store(
            self.client, self.api, self.intention.source, self.intention.destination
        )

    def desired(self) -> dict[str, Any] | None:
        if self.module.params["state"] == "absent":
            return None
        i = self.intention
        return view(i.source, i.destination, i.action, i.description)

    def extra_result(self, final: dict[str, Any] | None) -> dict[str, Any]:
        return {"api": self.api}


def main() -> None:
    module = AnsibleModule(
        argument_spec=connection_argspec(
            state={"type": "str", "choices": ["present", "absent"], "default": "present"},
            source={"type": "str", "required": True},
            destination={"type": "str", "required": True},
            action={"type": "str", "choices": ["allow", "deny"], "default": "allow"},
            description={"type": "str", "default": ""},
            api={
                "type": "str",
                "choices": ["auto", "config_entry", "legacy"],
                "default": "auto",
            },
        ),
        supports_check_mode=True,
    )
    run_lifecycle(IntentionLifecycle, module)


if __name__ == "__main__":
    main()
