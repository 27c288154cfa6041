#!/usr/bin/python
# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)

from __future__ import annotations

DOCUMENTATION = r"""
module: consul_acl_token
short_description: Manage a Consul ACL token (service identities, policies, rotation)
version_added: 0.2.0
description:
  - Creates, updates, rotates or deletes one Consul ACL token, found by O(accessor_id) or,
    without it, by its O(description) (which must then be unique).
  - Compares the description, service identities, policies and locality, so a second run
    reports no change; a changed service identity or policy list updates the token in place
    (same AccessorID, same SecretID).
  - The SecretID is returned in RV(secret_id) only, and the module's action plugin marks a
    result that carries it C(no_log), so Ansible shows it censored (also with C(-vvv)) while a
    registered variable keeps every field. It never appears in the diff or in a message.
  - Needs a token with C(acl:write) (the management token); run it on the controller
    (C(delegate_to) the control host) so that token never reaches a managed host.
author:
  - meshkit contributors (@meshkit)
extends_documentation_fragment:
  - meshkit.connect.attributes
  - meshkit.connect.consul
  - meshkit.connect.consul.ACTIONGROUP_CONSUL
attributes:
  diff_mode:
    description:
      - C(before) and C(after) hold exactly the fields that differ, never the secret; a
        rotation shows as C(secret_id) V(replaced).
      - Ansible does not print the diff of a result that carries the secret (the result is
        censored); it stays in the registered variable.
options:
  state:
    description: V(present) creates or updates, V(absent) deletes.
    type: str
    choices: [present, absent]
    default: present
  accessor_id:
    description:
      - The token's AccessorID. When the token does not exist yet it is created with this ID.
    type: str
  description:
    description:
      - The token's description; identifies the token when O(accessor_id) is not given.
    type: str
  service_identities:
    description: Service identities of the token.
    type: list
    elements: dict
    default: []
    suboptions:
      service_name:
        description: The service (its sidecar C(<name>-sidecar-proxy) is included).
        type: str
        required: true
      datacenters:
        description: Datacenters the identity is valid in (all when empty).
        type: list
        elements: str
        default: []
  policies:
    description: Names of ACL policies to link; each must exist.
    type: list
    elements: str
    default: []
  local:
    description: A token local to this datacenter (cannot be changed after creation).
    type: bool
    default: false
  rotate:
    description:
      - Replace the secret of an existing token (same AccessorID, new SecretID). Every run
        with V(true) rotates; the old secret stops working at once.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: A token for the web sidecar, with an extra policy
  meshkit.connect.consul_acl_token:
    description: meshkit proxy web on app1
    service_identities:
      - service_name: web
    policies: [db-q-read]
  delegate_to: localhost
  register: web_token
  no_log: true

- name: Rotate it
  meshkit.connect.consul_acl_token:
    accessor_id: "{{ web_token.accessor_id }}"
    description: meshkit proxy web on app1
    service_identities:
      - service_name: web
    policies: [db-q-read]
    rotate: true
  delegate_to: localhost
"""

RETURN = r"""
token:
  description: The token after the run, without its secret; null when absent.
  returned: always
  type: dict
  sample:
    description: meshkit proxy web on app1
    service_identities: [{service_name: web, datacenters: []}]
    policies: [db-q-read]
    local: false
accessor_id:
  description: The token's AccessorID.
  returned: when the token exists after the run (not in check mode before creation)
  type: str
  sample: 49dfdeb6-8708-a63a-8f8d-7778d43ef398
secret_id:
  description:
    - The token's SecretID. The whole result is marked no_log when this is set.
  returned: when the token exists after the run (not in check mode before creation)
  type: str
operation:
  description: What was (or in check mode would be) done.
  returned: changed
  type: str
  sample: create
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.meshkit.connect.plugins.module_utils.consul_acl import (
    ACLInputError,
    TokenStore,
    check_caller,
    missing_policies,
    token_view,
)
from ansible_collections.meshkit.connect.plugins.module_utils.consul_lifecycle import (
    Lifecycle,
    connection_argspec,
    run_lifecycle,
)


class TokenLifecycle(Lifecycle):
    result_key = "token"

    def __init__(self, module: AnsibleModule) -> None:
        super().__init__(module)
        p = module.params
        names = [i["service_name"] for i in p["service_identities"]]
        if len(set(names)) != len(names):
            raise ACLInputError("service_identities: a service_name is listed twice")
        if len(set(p["policies"])) != len(p["policies"]):
            raise ACLInputError("policies: a policy is listed twice")
        if not p["accessor_id"] and not p["description"]:
            raise ACLInputError("description or accessor_id: give one to name the token")
        self.store: TokenStore = TokenStore(
            self.client, p["accessor_id"] or None, p["description"] or ""
        )

    def desired(self) -> dict[str, Any] | None:
        if self.module.params["state"] == "absent":
            return None
        p = self.module.params
        return token_view(
            {
                "Description": p["description"] or "",
                "ServiceIdentities": [
                    {"ServiceName": i["service_name"], "Datacenters": i["datacenters"] or []}
                    for i in p["service_identities"]
                ],
                "Policies": [{"Name": n} for n in p["policies"]],
                "Local": p["local"],
            }
        )

    def _check_policies(self, want: dict[str, Any]) -> None:
        missing = missing_policies(self.client, want["policies"])
        if missing:
            raise ACLInputError(
                f"policies: no ACL policy named {', '.join(missing)}; create it first "
                "(meshkit.connect.consul_acl_policy) or remove it from the list"
            )

    def _run(self) -> dict[str, Any]:
        p = self.module.params
        check_caller(self.client)  # so that "ACL not found" on a read means absent
        want = self.desired()
        if want is not None:
            self._check_policies(want)  # before any write, in check mode too
        result = super()._run()
        final = result.get(self.result_key)
        store = self.store
        rotate = p["rotate"] and p["state"] == "present" and result.get("operation") != "create"
        if rotate and final is not None and store.accessor_id:
            if not self.module.check_mode:
                store.rotate(final)
            result["changed"] = True
            result["operation"] = "rotate" if "operation" not in result else "update+rotate"
            diff = result.get("diff", {"before": {}, "after": {}})
            if self.module._diff:
                diff["before"]["secret_id"] = "(previous)"
                diff["after"]["secret_id"] = "replaced"
                result["diff"] = diff
        if final is not None and store.accessor_id:
            result["accessor_id"] = store.accessor_id
        if final is not None and store.secret_id:
            # The action plugin of the same name marks a result with a secret no_log.
            result["secret_id"] = store.secret_id
        return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=connection_argspec(
            state={"type": "str", "choices": ["present", "absent"], "default": "present"},
            accessor_id={"type": "str"},
            description={"type": "str"},
            service_identities={
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "service_name": {"type": "str", "required": True},
                    "datacenters": {"type": "list", "elements": "str", "default": []},
                },
            },
            policies={"type": "list", "elements": "str", "default": []},
            local={"type": "bool", "default": False},
            rotate={"type": "bool", "default": False},
        ),
        required_one_of=[("accessor_id", "description")],
        supports_check_mode=True,
    )
    try:
        run_lifecycle(TokenLifecycle, module)
    except ACLInputError as err:
        module.fail_json(msg=str(err))


if __name__ == "__main__":
    main()
