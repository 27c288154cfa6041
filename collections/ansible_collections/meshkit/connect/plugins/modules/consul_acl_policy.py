#!/usr/bin/python
# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)

from __future__ import annotations

DOCUMENTATION = r"""
module: consul_acl_policy
short_description: Manage a Consul ACL policy by name
version_added: 0.2.0
description:
  - Creates, updates or deletes one Consul ACL policy, found by its name, so a proxy can be
    granted more than its service identity gives (for example
    C(query "db-q" { policy = "read" }) for a prepared query upstream).
  - Compares name, description, rules and datacenters, so a second run reports no change.
  - Consul validates the rules; a refused rule fails the task with Consul's message.
  - Needs a token with C(acl:write) (the management token); run it on the controller.
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
  name:
    description: The policy's name (letters, digits, C(-) and C(_)).
    type: str
    required: true
  description:
    description: Free text shown with the policy.
    type: str
    default: ""
  rules:
    description:
      - The rules, as HCL or JSON text, or as a mapping (sent as JSON).
      - Compared as text, so the same rules written differently are a change.
    type: raw
  datacenters:
    description: Datacenters the policy applies in (all when empty).
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Let proxies read the db-q prepared query
  meshkit.connect.consul_acl_policy:
    name: db-q-read
    rules: |
      query "db-q" {
        policy = "read"
      }
  delegate_to: localhost
"""

RETURN = r"""
policy:
  description: The policy after the run; null when absent.
  returned: always
  type: dict
  sample:
    name: db-q-read
    description: ""
    rules: 'query "db-q" { policy = "read" }'
    datacenters: []
id:
  description: Consul's ID of the policy.
  returned: when the policy exists after the run (not in check mode before creation)
  type: str
operation:
  description: What was (or in check mode would be) done.
  returned: changed
  type: str
  sample: update
"""

import re
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.meshkit.connect.plugins.module_utils.consul_acl import (
    ACLInputError,
    PolicyStore,
    policy_view,
    rules_text,
)
from ansible_collections.meshkit.connect.plugins.module_utils.consul_lifecycle import (
    Lifecycle,
    connection_argspec,
    run_lifecycle,
)

_NAME = re.compile(r"^[A-Za-z0-9\-_]{1,128}$")


class PolicyLifecycle(Lifecycle):
    result_key = "policy"

    def __init__(self, module: AnsibleModule) -> None:
        super().__init__(module)
        p = module.params
        if not _NAME.match(p["name"]):
            raise ACLInputError(
                f"name: {p['name']!r} is not a valid policy name (letters, digits, '-' and "
                "'_', at most 128)"
            )
        if p["rules"] is not None and not isinstance(p["rules"], (str, dict)):
            raise ACLInputError("rules: give HCL or JSON text, or a mapping")
        self.store: PolicyStore = PolicyStore(self.client, p["name"])

    def desired(self) -> dict[str, Any] | None:
        p = self.module.params
        if p["state"] == "absent":
            return None
        return policy_view(
            {
                "Name": p["name"],
                "Description": p["description"] or "",
                "Rules": rules_text(p["rules"]),
                "Datacenters": p["datacenters"] or [],
            }
        )

    def extra_result(self, final: dict[str, Any] | None) -> dict[str, Any]:
        return {"id": self.store.id} if final is not None and self.store.id else {}


def main() -> None:
    module = AnsibleModule(
        argument_spec=connection_argspec(
            state={"type": "str", "choices": ["present", "absent"], "default": "present"},
            name={"type": "str", "required": True},
            description={"type": "str", "default": ""},
            rules={"type": "raw"},
            datacenters={"type": "list", "elements": "str", "default": []},
        ),
        required_if=[("state", "present", ["rules"])],
        supports_check_mode=True,
    )
    try:
        run_lifecycle(PolicyLifecycle, module)
    except ACLInputError as err:
        module.fail_json(msg=str(err))


if __name__ == "__main__":
    main()
