#!/usr/bin/python
# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)

from __future__ import annotations

DOCUMENTATION = r"""
module: consul_service
short_description: Register a service and its Connect sidecar on the local Consul agent
version_added: 0.1.0
description:
  - Registers one service of the mesh model (see the collection README) with its
    C(connect.sidecar_service) on the local agent through C(PUT /v1/agent/service/register)
    with C(replace-existing-checks), so the checks declared with the service are the only ones.
  - Reads back C(/v1/agent/service/<id>), the sidecar C(<id>-sidecar-proxy) and the agent's
    checks, and compares the whole normalised registration, so a second run with the same
    input reports no change, and a removed tag, upstream or check is a change.
  - The model is validated before anything is sent, every problem reported at once (loopback-only
    addresses, names, ports, prepared query upstreams that neither O(prepared_queries),
    O(known_queries) nor Consul define).
  - Listener clashes between services of one host need all of them; validate those with the
    P(meshkit.connect.mesh_validate#filter) filter.
author:
  - meshkit contributors (@meshkit)
extends_documentation_fragment:
  - meshkit.connect.attributes
  - meshkit.connect.consul
  - meshkit.connect.consul.ACTIONGROUP_CONSUL
attributes:
  diff_mode:
    description: C(before) and C(after) hold exactly the fields of the registration that differ.
options:
  state:
    description:
      - V(present) registers or updates, V(absent) deregisters (the sidecar goes with it).
    type: str
    choices: [present, absent]
    default: present
  service:
    description:
      - One item of C(meshkit_services), in the form the mesh model documents
        (C(name), C(id), C(port), C(address), C(allow_non_loopback), C(tags), C(meta),
        C(checks), C(sidecar), C(nomad), C(connect)); C(connect.native=true) registers a
        Connect-native service (no sidecar, no upstreams).
      - Required when O(state=present).
    type: dict
    # mesh schema: SERVICE (written by .ci/mesh-schema from mesh_schema.py)
    suboptions:
      name:
        description: 'Service name: lower case letters, digits, dashes.'
        type: str
      id:
        description: 'Service ID, unique per host (default: C(name)).'
        type: str
      port:
        description: The app's port.
        type: int
      address:
        description: 'Where the app listens: loopback (default V(127.0.0.1)) unless C(allow_non_loopback).'
        type: str
      allow_non_loopback:
        description: 'The documented escape hatch: the app may listen on a host address.'
        type: bool
      tags:
        description: Service tags.
        type: list
        elements: str
      meta:
        description: Service meta, string to string.
        type: dict
      checks:
        description: Health checks of the app.
        type: list
        elements: dict
        suboptions:
          name:
            description: Check name.
            type: str
          id:
            description: 'Check ID (default: Consul''s).'
            type: str
          tcp:
            description: C(host:port) to dial (one of tcp, http, ttl, args, alias_service).
            type: str
          http:
            description: URL to GET (or C(method)).
            type: str
          method:
            description: HTTP method of an http check.
            type: str
          header:
            description: HTTP headers, name to list of values.
            type: dict
          tls_skip_verify:
            description: Do not verify an https check's server.
            type: bool
          ttl:
            description: TTL of a check the app updates itself.
            type: str
          args:
            description: Script check's command.
            type: list
            elements: str
          alias_service:
            description: Service whose health this check mirrors.
            type: str
          interval:
            description: How often, e.g. V(10s).
            type: str
          timeout:
            description: Timeout, e.g. V(2s).
            type: str
          deregister_critical_service_after:
            description: Deregister the service after this long critical.
            type: str
          notes:
            description: Free text.
            type: str
          status:
            description: 'Initial status: V(passing), V(warning) or V(critical).'
            type: str
      sidecar:
        description: The Connect sidecar; omit for a service outside the mesh.
        type: dict
        suboptions:
          port:
            description: V(auto) (Consul picks from 21000-21255) or a port number; a number is required
              when C(address) is a host address.
            type: raw
          address:
            description: 'Public listener address; empty: Consul inherits the service address.'
            type: str
          local_service_address:
            description: 'Where the proxy reaches the app (default: the service''s C(address)).'
            type: str
          local_service_port:
            description: 'The app''s port for the proxy (default: the service''s C(port)).'
            type: int
          admin_port:
            description: meshkit-proxy's C(/metrics) and C(/ready) port on 127.0.0.1.
            type: int
          config:
            description: Passed to C(Proxy.Config) (C(handshake_timeout_ms), ...).
            type: dict
          upstreams:
            description: The upstreams the app reaches through the sidecar.
            type: list
            elements: dict
            suboptions:
              destination_name:
                description: Service name or prepared query name.
                type: str
              destination_type:
                description: V(service) (the default) or V(prepared_query).
                type: str
              datacenter:
                description: Datacenter of the destination (optional).
                type: str
              local_bind_address:
                description: Where the app reaches the upstream; loopback (default V(127.0.0.1)) unless
                  the upstream's C(allow_non_loopback).
                type: str
              local_bind_port:
                description: The upstream listener's port.
                type: int
              config:
                description: Upstream config (C(connect_timeout_ms), ...).
                type: dict
              allow_non_loopback:
                description: Allow a non-loopback C(local_bind_address) (default V(false)).
                type: bool
      connect:
        description: 'C({native: true}) for a Connect-native service (no sidecar); older Consul forms
          (C(proxy), C(sidecar_service)) are converted with a warning.'
        type: dict
      nomad:
        description: Nomad-only settings (docs/nomad.md).
        type: dict
      acl:
        description: Per-service ACL settings (docs/security.md).
        type: dict
      defaults:
        description: The service's C(service-defaults) entry.
        type: dict
      kind:
        description: 'Older Consul form: V(connect-proxy), converted.'
        type: str
      proxy:
        description: Older Consul form of a proxy, converted.
        type: dict
      proxy_destination:
        description: Consul 1.2-1.3 form, converted.
        type: str
    # end mesh schema
  services:
    description:
      - Several items of C(meshkit_services), managed by one task, the services of one host.
      - They are validated together, so listener clashes between them are refused too, and
        one module run replaces a loop of many (much faster for a host with many services).
      - With O(state=absent), each of them is deregistered.
      - Mutually exclusive with O(service) and O(id).
    type: list
    elements: dict
    # mesh schema: SERVICE (written by .ci/mesh-schema from mesh_schema.py)
    suboptions:
      name:
        description: 'Service name: lower case letters, digits, dashes.'
        type: str
      id:
        description: 'Service ID, unique per host (default: C(name)).'
        type: str
      port:
        description: The app's port.
        type: int
      address:
        description: 'Where the app listens: loopback (default V(127.0.0.1)) unless C(allow_non_loopback).'
        type: str
      allow_non_loopback:
        description: 'The documented escape hatch: the app may listen on a host address.'
        type: bool
      tags:
        description: Service tags.
        type: list
        elements: str
      meta:
        description: Service meta, string to string.
        type: dict
      checks:
        description: Health checks of the app.
        type: list
        elements: dict
        suboptions:
          name:
            description: Check name.
            type: str
          id:
            description: 'Check ID (default: Consul''s).'
            type: str
          tcp:
            description: C(host:port) to dial (one of tcp, http, ttl, args, alias_service).
            type: str
          http:
            description: URL to GET (or C(method)).
            type: str
          method:
            description: HTTP method of an http check.
            type: str
          header:
            description: HTTP headers, name to list of values.
            type: dict
          tls_skip_verify:
            description: Do not verify an https check's server.
            type: bool
          ttl:
            description: TTL of a check the app updates itself.
            type: str
          args:
            description: Script check's command.
            type: list
            elements: str
          alias_service:
            description: Service whose health this check mirrors.
            type: str
          interval:
            description: How often, e.g. V(10s).
            type: str
          timeout:
            description: Timeout, e.g. V(2s).
            type: str
          deregister_critical_service_after:
            description: Deregister the service after this long critical.
            type: str
          notes:
            description: Free text.
            type: str
          status:
            description: 'Initial status: V(passing), V(warning) or V(critical).'
            type: str
      sidecar:
        description: The Connect sidecar; omit for a service outside the mesh.
        type: dict
        suboptions:
          port:
            description: V(auto) (Consul picks from 21000-21255) or a port number; a number is required
              when C(address) is a host address.
            type: raw
          address:
            description: 'Public listener address; empty: Consul inherits the service address.'
            type: str
          local_service_address:
            description: 'Where the proxy reaches the app (default: the service''s C(address)).'
            type: str
          local_service_port:
            description: 'The app''s port for the proxy (default: the service''s C(port)).'
            type: int
          admin_port:
            description: meshkit-proxy's C(/metrics) and C(/ready) port on 127.0.0.1.
            type: int
          config:
            description: Passed to C(Proxy.Config) (C(handshake_timeout_ms), ...).
            type: dict
          upstreams:
            description: The upstreams the app reaches through the sidecar.
            type: list
            elements: dict
            suboptions:
              destination_name:
                description: Service name or prepared query name.
                type: str
              destination_type:
                description: V(service) (the default) or V(prepared_query).
                type: str
              datacenter:
                description: Datacenter of the destination (optional).
                type: str
              local_bind_address:
                description: Where the app reaches the upstream; loopback (default V(127.0.0.1)) unless
                  the upstream's C(allow_non_loopback).
                type: str
              local_bind_port:
                description: The upstream listener's port.
                type: int
              config:
                description: Upstream config (C(connect_timeout_ms), ...).
                type: dict
              allow_non_loopback:
                description: Allow a non-loopback C(local_bind_address) (default V(false)).
                type: bool
      connect:
        description: 'C({native: true}) for a Connect-native service (no sidecar); older Consul forms
          (C(proxy), C(sidecar_service)) are converted with a warning.'
        type: dict
      nomad:
        description: Nomad-only settings (docs/nomad.md).
        type: dict
      acl:
        description: Per-service ACL settings (docs/security.md).
        type: dict
      defaults:
        description: The service's C(service-defaults) entry.
        type: dict
      kind:
        description: 'Older Consul form: V(connect-proxy), converted.'
        type: str
      proxy:
        description: Older Consul form of a proxy, converted.
        type: dict
      proxy_destination:
        description: Consul 1.2-1.3 form, converted.
        type: str
    # end mesh schema
  id:
    description:
      - Service ID to remove when O(state=absent) and O(service) is not given.
    type: str
  registration:
    description:
      - V(sidecar_service) nests the sidecar in the service's registration
        (C(connect.sidecar_service)); Consul then fills its defaults, may assign its port, and
        removes it with the service.
      - V(standalone_proxy) registers the sidecar as its own C(connect-proxy) service, with the
        same ID (C(<id>-sidecar-proxy)) and name, for proxies whose lifecycle is managed apart
        from the app's. Its C(sidecar.port) must be a fixed number.
      - Checks differ between the two forms on a real Consul. For V(sidecar_service) Consul 1.7
        adds two default checks (C(Connect Sidecar Listening), TCP every 10s dialling
        C(local_service_address:port), and C(Connect Sidecar Aliasing <id>)); when the sidecar
        listens on another address, the same two checks are registered explicitly at the
        listener's address. Consul adds no checks to a V(standalone_proxy) registration, so
        this module registers those two checks itself, dialling the listener's address.
        See docs/mesh-model.md, "Sidecar checks".
      - Both read back the same, so switching between them is a change only if something else
        differs; O(state=absent) removes a standalone proxy too.
    type: str
    choices: [sidecar_service, standalone_proxy]
    default: sidecar_service
  prepared_queries:
    description:
      - The mesh's C(meshkit_prepared_queries), so upstreams of type C(prepared_query) can be
        checked against queries the model defines.
    type: list
    elements: dict
    default: []
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
  known_queries:
    description:
      - Names of prepared queries defined elsewhere that upstreams may use.
      - Queries Consul already holds are found by listing C(/v1/query).
    type: list
    elements: str
    default: []
notes:
  - Consul does not return check definitions from C(/v1/agent/checks), so the module keeps a
    fingerprint of them in the C(meshkit-checks) service meta key and compares that.
seealso:
  - module: meshkit.connect.consul_mesh_info
"""

EXAMPLES = r"""
- name: Register every service of this host with its sidecar
  meshkit.connect.consul_service:
    service: "{{ item }}"
    prepared_queries: "{{ meshkit_prepared_queries }}"
  loop: "{{ meshkit_services }}"
  loop_control:
    label: "{{ item.name }}"

- name: Register db over TLS with a client certificate
  meshkit.connect.consul_service:
    scheme: https
    port: 8501
    ca_path: /etc/consul.d/tls/ca.pem
    client_cert: /etc/consul.d/tls/client.pem
    client_key: /etc/consul.d/tls/client-key.pem
    token: "{{ consul_token }}"
    service:
      name: db
      port: 5432
      checks:
        - {name: db tcp, tcp: "127.0.0.1:5432", interval: 10s}
      sidecar:
        port: auto
        admin_port: 19001

- name: All services of this host in one task (validated together, listener clashes included)
  meshkit.connect.consul_service:
    services: "{{ meshkit_services }}"
    prepared_queries: "{{ meshkit_prepared_queries }}"

- name: Remove the web service and its sidecar
  meshkit.connect.consul_service:
    state: absent
    id: web
"""

RETURN = r"""
service:
  description: The normalised registration (agent API form) after the run; null when absent.
  returned: always
  type: dict
  sample:
    ID: db
    Name: db
    Port: 5432
    Address: 127.0.0.1
    Tags: [primary]
    Meta: {team: data}
    Connect: {SidecarService: {Proxy: {LocalServiceAddress: 127.0.0.1, LocalServicePort: 5432,
              Upstreams: []}}}
services:
  description: With O(services), the normalised registrations after the run, by service ID.
  returned: when O(services) is given
  type: dict
operation:
  description: What was (or in check mode would be) done.
  returned: changed
  type: str
  sample: update
sidecar_ports:
  description: With O(services), the sidecars' public ports by service ID.
  returned: when O(services) is given, not in check mode
  type: dict
  sample: {db: 21000, web: 21001}
sidecar_port:
  description: The sidecar's public port as the agent holds it (auto-assigned ones included).
  returned: when the service has a sidecar and it is registered
  type: int
  sample: 21000
"""

from collections.abc import Sequence
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.meshkit.connect.plugins.module_utils.consul_api import ConsulClient
from ansible_collections.meshkit.connect.plugins.module_utils.consul_lifecycle import (
    Lifecycle,
    connection_argspec,
    run_lifecycle,
)
from ansible_collections.meshkit.connect.plugins.module_utils.consul_queries import list_queries
from ansible_collections.meshkit.connect.plugins.module_utils.consul_services import (
    ServicesStore,
    ServiceStore,
    desired_view,
)
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import (
    Service,
    parse_mesh,
)
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_schema import (
    QUERY,
    SERVICE,
    argspec,
    drop_unset,
)
from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import (
    ModelError,
    Problem,
)


def parse_services(
    module: AnsibleModule, client: ConsulClient, items: list[Any]
) -> tuple[list[Service], bool]:
    """The task's services, validated together, and whether their proxies register standalone.

    Prepared queries Consul already holds count as known only when an upstream names one
    (listing them costs a request). Conversions of older Consul proxy forms become warnings.
    """
    params = module.params
    ups = [
        u
        for svc in items
        if isinstance(svc, dict)
        for u in ((svc.get("sidecar") or {}).get("upstreams") or [])
    ]
    known = list(params["known_queries"])
    if any(isinstance(u, dict) and u.get("destination_type") == "prepared_query" for u in ups):
        known += [q.get("Name", "") for q in list_queries(client)]
    mesh = parse_mesh(
        {"services": items, "prepared_queries": params["prepared_queries"]},
        source="consul_service",
        known_queries=known,
    )
    for warning in mesh.warnings:  # older Consul proxy forms, converted
        module.warn(warning)
    return list(mesh.services), standalone_proxy(module, mesh.services)


def standalone_proxy(module: AnsibleModule, services: Sequence[Service]) -> bool:
    """Whether proxies register on their own; refuses auto ports (sidecar_service only)."""
    if module.params["registration"] != "standalone_proxy":
        return False
    problems = [
        Problem(f"services ({svc.name}).sidecar.port", "a standalone connect-proxy needs a fixed "
                "port (Consul assigns ports only to sidecar_service)", "set sidecar.port")
        for svc in services
        if svc.sidecar is not None and svc.sidecar.port is None
    ]  # fmt: skip
    if problems:
        raise ModelError(problems, "consul_service")
    return True


class ServiceLifecycle(Lifecycle):
    """One service (``service``), or with only ``id`` its removal."""

    result_key = "service"

    def __init__(self, module: AnsibleModule) -> None:
        super().__init__(module)
        params = module.params
        service: Service | None = None
        standalone = False  # removal by ID registers nothing
        if params["service"] is not None:
            services, standalone = parse_services(module, self.client, [params["service"]])
            service = services[0]
        self.service = service
        service_id = service.id if service is not None else params["id"]
        self.store: ServiceStore = ServiceStore(
            self.client, service_id, service, standalone_proxy=standalone
        )

    def desired(self) -> dict[str, Any] | None:
        if self.module.params["state"] == "absent" or self.service is None:
            return None
        return desired_view(self.service)

    def extra_result(self, final: dict[str, Any] | None) -> dict[str, Any]:
        if final is None or "Connect" not in final or self.module.check_mode:
            return {}
        port = self.store.sidecar_port()
        return {"sidecar_port": port} if port else {}


class ServicesLifecycle(Lifecycle):
    """Many services in one run: the normalised object is ``{service id: registration}``."""

    result_key = "services"

    def __init__(self, module: AnsibleModule) -> None:
        super().__init__(module)
        services, standalone = parse_services(module, self.client, module.params["services"])
        self.services = {svc.id: svc for svc in services}
        self.store: ServicesStore = ServicesStore(
            self.client, self.services, standalone_proxy=standalone
        )

    def desired(self) -> dict[str, Any] | None:
        if self.module.params["state"] == "absent":
            return {}
        return {sid: desired_view(svc) for sid, svc in self.services.items()}

    def extra_result(self, final: dict[str, Any] | None) -> dict[str, Any]:
        if not final or self.module.check_mode:
            return {}
        ports = {sid: self.store.stores[sid].sidecar_port() for sid, view in final.items()
                 if "Connect" in view}  # fmt: skip
        return {"sidecar_ports": {sid: port for sid, port in ports.items() if port}}


def main() -> None:
    module = AnsibleModule(
        argument_spec=connection_argspec(
            state={"type": "str", "choices": ["present", "absent"], "default": "present"},
            service={"type": "dict", "options": argspec(SERVICE)},
            services={"type": "list", "elements": "dict", "options": argspec(SERVICE)},
            registration={
                "type": "str",
                "choices": ["sidecar_service", "standalone_proxy"],
                "default": "sidecar_service",
            },
            id={"type": "str"},
            prepared_queries={
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": argspec(QUERY),
            },
            known_queries={"type": "list", "elements": "str", "default": []},
        ),
        required_if=[("state", "present", ["service", "services"], True)],
        required_one_of=[("service", "services", "id")],
        mutually_exclusive=[("service", "services"), ("services", "id")],
        supports_check_mode=True,
    )
    for key, spec in (("service", SERVICE), ("services", SERVICE), ("prepared_queries", QUERY)):
        module.params[key] = drop_unset(module.params[key], spec)
    if module.params["services"] is not None:
        run_lifecycle(ServicesLifecycle, module)
    else:
        run_lifecycle(ServiceLifecycle, module)


if __name__ == "__main__":
    main()
