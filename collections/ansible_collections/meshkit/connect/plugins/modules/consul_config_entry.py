#!/usr/bin/python
# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)

from __future__ import annotations

DOCUMENTATION = r"""
module: consul_config_entry
short_description: Manage a Consul proxy-defaults or service-defaults config entry
version_added: 0.2.0
description:
  - Creates, updates or deletes one C(proxy-defaults) or C(service-defaults) config entry,
    Consul's central proxy configuration. C(service-intentions) entries are managed with
    M(meshkit.connect.consul_intention).
  - The whole entry is compared, so a second run reports no change and a removed key is a
    change; the diff holds only the fields that differ.
  - Input is checked before anything is written. Consul 1.7 itself accepts any protocol and
    stores a C(proxy-defaults) entry as V(global) whatever its name, so a wrong name would
    overwrite the global defaults. An unknown O(kind), a C(proxy-defaults) entry not named
    V(global), or a protocol other than V(tcp), V(http), V(http2), V(grpc) fail with the field
    named.
  - Every write is a check-and-set against the C(ModifyIndex) read at the start of the run (or
    O(cas) when given), so an edit made by someone else in between is refused and reported,
    never overwritten.
author:
  - meshkit contributors (@meshkit)
extends_documentation_fragment:
  - meshkit.connect.attributes
  - meshkit.connect.consul
  - meshkit.connect.consul.ACTIONGROUP_CONSUL
options:
  kind:
    description: The kind of entry.
    type: str
    required: true
    choices: [proxy-defaults, service-defaults]
  name:
    description:
      - The entry's name. V(global) for C(proxy-defaults) (the only name Consul uses); the
        service's name for C(service-defaults).
    type: str
    required: true
  state:
    description: V(present) creates or updates, V(absent) deletes.
    type: str
    choices: [present, absent]
    default: present
  config:
    description:
      - C(proxy-defaults) only. The opaque proxy configuration merged into every proxy's
        registration (for meshkit-proxy C(local_connect_timeout_ms), C(handshake_timeout_ms),
        C(connect_timeout_ms), C(protocol), ...).
    type: dict
  protocol:
    description:
      - C(service-defaults) only. The service's protocol; merged into its proxies' and its
        callers' upstream C(Config.protocol).
    type: str
  mesh_gateway:
    description: C(MeshGateway); V(mode) is one of V(none), V(local), V(remote).
    type: dict
  expose:
    description:
      - C(Expose); V(checks) (bool) and V(paths), each with V(path), V(local_path_port),
        V(listener_port) and V(protocol) (V(http) or V(http2)).
    type: dict
  external_sni:
    description: C(service-defaults) only. C(ExternalSNI) (Consul 1.8 and later).
    type: str
  cas:
    description:
      - Write only if the entry's C(ModifyIndex) is still this value (V(0) means "only if it
        does not exist yet"). A mismatch fails the task and reports the current index.
      - Without it the index read at the start of the run is used, so concurrent edits are
        refused all the same.
      - Consul before 1.10 deletes without check-and-set; on delete the module re-reads the
        entry and refuses when it changed, which leaves a window of one request.
    type: int
"""

EXAMPLES = r"""
- name: Proxy defaults for every proxy of the datacenter
  meshkit.connect.consul_config_entry:
    kind: proxy-defaults
    name: global
    config:
      local_connect_timeout_ms: 1500
      handshake_timeout_ms: 7000
      protocol: tcp

- name: db speaks HTTP
  meshkit.connect.consul_config_entry:
    kind: service-defaults
    name: db
    protocol: http

- name: Change it only if nobody else has since index 42
  meshkit.connect.consul_config_entry:
    kind: service-defaults
    name: db
    protocol: grpc
    cas: 42
"""

RETURN = r"""
entry:
  description: The entry after the run (normalised); null when absent.
  returned: always
  type: dict
  sample: {Kind: service-defaults, Name: db, Protocol: http, ExternalSNI: "",
           MeshGateway: {}, Expose: {}}
modify_index:
  description: The entry's C(ModifyIndex) as read at the start of the run; 0 when it did not exist.
  returned: always
  type: int
  sample: 42
operation:
  description: What was (or in check mode would be) done.
  returned: changed
  type: str
  sample: update
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.meshkit.connect.plugins.module_utils.consul_config_entries import (
    KINDS,
    DefaultsEntryStore,
    entry_from_fields,
)
from ansible_collections.meshkit.connect.plugins.module_utils.consul_lifecycle import (
    Lifecycle,
    connection_argspec,
    run_lifecycle,
)

_FIELDS = ("config", "protocol", "mesh_gateway", "expose", "external_sni")


class ConfigEntryLifecycle(Lifecycle):
    result_key = "entry"

    def __init__(self, module: AnsibleModule) -> None:
        super().__init__(module)
        p = module.params
        # Parsed and validated once, before anything is read or written.
        self.want = entry_from_fields(p["kind"], p["name"], {k: p[k] for k in _FIELDS})
        self.store: DefaultsEntryStore = DefaultsEntryStore(
            self.client, p["kind"], p["name"], p["cas"]
        )

    def desired(self) -> dict[str, Any] | None:
        return None if self.module.params["state"] == "absent" else self.want

    def _run(self) -> dict[str, Any]:
        result = super()._run()
        # Check mode writes nothing, so predict the check-and-set the real run would do.
        if self.module.check_mode and result["changed"]:
            refusal = self.store.predicted_refusal()
            if refusal is not None:
                raise refusal
        return result

    def extra_result(self, final: dict[str, Any] | None) -> dict[str, Any]:
        return {"modify_index": self.store.index}


def main() -> None:
    module = AnsibleModule(
        argument_spec=connection_argspec(
            kind={"type": "str", "required": True, "choices": list(KINDS)},
            name={"type": "str", "required": True},
            state={"type": "str", "choices": ["present", "absent"], "default": "present"},
            config={"type": "dict"},
            protocol={"type": "str"},
            mesh_gateway={"type": "dict"},
            expose={"type": "dict"},
            external_sni={"type": "str"},
            cas={"type": "int"},
        ),
        supports_check_mode=True,
    )
    run_lifecycle(ConfigEntryLifecycle, module)


if __name__ == "__main__":
    main()
