# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)
"""The mesh model's shape as Ansible option specs: one source for the modules' argument specs,
their DOCUMENTATION and the roles' ``meta/argument_specs.yml`` (``.ci/mesh-schema`` writes the
YAML between the ``mesh schema`` markers; a test checks it is current).

Types only, never meaning: ``mesh_model.py`` stays the one validator of what a model means
(names, loopback, cross-field rules) and its messages. So a field whose value the parser takes in
several forms (``sidecar.port``: ``auto`` or a number) is ``raw``, values the parser also takes
as empty (``""``) carry no ``choices``, and dicts that other parts of the project extend
(``connect``, ``config``, ``nomad``, ``acl``, ``defaults``, the older Consul proxy forms
``proxy``) stay open: ``type: dict`` without suboptions.

Ansible fills every declared suboption a user left out with None (or its default);
``drop_unset`` removes those Nones again before the model is parsed, so the parser sees what the
user wrote.

Runs on managed hosts: Python 3.8 syntax at run time, stdlib only.
"""

from __future__ import annotations

from typing import Any, Dict

Spec = Dict[str, Dict[str, Any]]

UPSTREAM: Spec = {
    "destination_name": {"type": "str", "description": "Service name or prepared query name."},
    "destination_type": {
        "type": "str",
        "description": "V(service) (the default) or V(prepared_query).",
    },
    "datacenter": {"type": "str", "description": "Datacenter of the destination (optional)."},
    "local_bind_address": {
        "type": "str",
        "description": "Where the app reaches the upstream; loopback (default V(127.0.0.1)) "
        "unless the upstream's C(allow_non_loopback).",
    },
    "local_bind_port": {"type": "int", "description": "The upstream listener's port."},
    "config": {"type": "dict", "description": "Upstream config (C(connect_timeout_ms), ...)."},
    "allow_non_loopback": {
        "type": "bool",
        "description": "Allow a non-loopback C(local_bind_address) (default V(false)).",
    },
}

SIDECAR: Spec = {
    "port": {
        "type": "raw",
        "description": "V(auto) (Consul picks from 21000-21255) or a port number; a number is "
        "required when C(address) is a host address.",
    },
    "address": {
        "type": "str",
        "description": "Public listener address; empty: Consul inherits the service address.",
    },
    "local_service_address": {
        "type": "str",
        "description": "Where the proxy reaches the app (default: the service's C(address)).",
    },
    "local_service_port": {
        "type": "int",
        "description": "The app's port for the proxy (default: the service's C(port)).",
    },
    "admin_port": {
        "type": "int",
        "description": "meshkit-proxy's C(/metrics) and C(/ready) port on 127.0.0.1.",
    },
    "config": {
        "type": "dict",
        "description": "Passed to C(Proxy.Config) (C(handshake_timeout_ms), ...).",
    },
    "upstreams": {
        "type": "list",
        "elements": "dict",
        "description": "The upstreams the app reaches through the sidecar.",
        "suboptions": UPSTREAM,
    },
}

CHECK: Spec = {
    "name": {"type": "str", "description": "Check name."},
    "id": {"type": "str", "description": "Check ID (default: Consul's)."},
    "tcp": {
        "type": "str",
        "description": "C(host:port) to dial (one of tcp, http, ttl, args, alias_service).",
    },
    "http": {"type": "str", "description": "URL to GET (or C(method))."},
    "method": {"type": "str", "description": "HTTP method of an http check."},
    "header": {"type": "dict", "description": "HTTP headers, name to list of values."},
    "tls_skip_verify": {"type": "bool", "description": "Do not verify an https check's server."},
    "ttl": {"type": "str", "description": "TTL of a check the app updates itself."},
    "args": {"type": "list", "elements": "str", "description": "Script check's command."},
    "alias_service": {"type": "str", "description": "Service whose health this check mirrors."},
    "interval": {"type": "str", "description": "How often, e.g. V(10s)."},
    "timeout": {"type": "str", "description": "Timeout, e.g. V(2s)."},
    "deregister_critical_service_after": {
        "type": "str",
        "description": "Deregister the service after this long critical.",
    },
    "notes": {"type": "str", "description": "Free text."},
    "status": {
        "type": "str",
        "description": "Initial status: V(passing), V(warning) or V(critical).",
    },
}

SERVICE: Spec = {
    "name": {"type": "str", "description": "Service name: lower case letters, digits, dashes."},
    "id": {"type": "str", "description": "Service ID, unique per host (default: C(name))."},
    "port": {"type": "int", "description": "The app's port."},
    "address": {
        "type": "str",
        "description": "Where the app listens: loopback (default V(127.0.0.1)) unless "
        "C(allow_non_loopback).",
    },
    "allow_non_loopback": {
        "type": "bool",
        "description": "The documented escape hatch: the app may listen on a host address.",
    },
    "tags": {"type": "list", "elements": "str", "description": "Service tags."},
    "meta": {"type": "dict", "description": "Service meta, string to string."},
    "checks": {
        "type": "list",
        "elements": "dict",
        "description": "Health checks of the app.",
        "suboptions": CHECK,
    },
    "sidecar": {
        "type": "dict",
        "description": "The Connect sidecar; omit for a service outside the mesh.",
        "suboptions": SIDECAR,
    },
    "connect": {
        "type": "dict",
        "description": "C({native: true}) for a Connect-native service (no sidecar); older "
        "Consul forms (C(proxy), C(sidecar_service)) are converted with a warning.",
    },
    "nomad": {"type": "dict", "description": "Nomad-only settings (docs/nomad.md)."},
    "acl": {"type": "dict", "description": "Per-service ACL settings (docs/security.md)."},
    "defaults": {"type": "dict", "description": "The service's C(service-defaults) entry."},
    "kind": {"type": "str", "description": "Older Consul form: V(connect-proxy), converted."},
    "proxy": {"type": "dict", "description": "Older Consul form of a proxy, converted."},
    "proxy_destination": {"type": "str", "description": "Consul 1.2-1.3 form, converted."},
}

QUERY: Spec = {
    "name": {"type": "str", "description": "Query name, unique; an upstream names it."},
    "service": {"type": "str", "description": "The service the query finds."},
    "tags": {"type": "list", "elements": "str", "description": "Tags the instances must have."},
    "only_passing": {"type": "bool", "description": "Only passing instances (default V(true))."},
    "near": {"type": "str", "description": "Sort by distance, e.g. V(_agent)."},
    "failover": {
        "type": "dict",
        "description": "Other datacenters to try.",
        "suboptions": {
            "nearest_n": {"type": "int", "description": "The N nearest other datacenters."},
            "datacenters": {"type": "list", "elements": "str", "description": "Explicit list."},
        },
    },
    "connect": {
        "type": "bool",
        "description": "Results are Connect-capable instances (default V(true)).",
    },
}

INTENTION: Spec = {
    "source": {"type": "str", "description": "Source service name or V(*)."},
    "destination": {"type": "str", "description": "Destination service name, never V(*)."},
    "action": {"type": "str", "description": "V(allow) (the default) or V(deny)."},
    "description": {"type": "str", "description": "Free text."},
}


def argspec(spec: Spec) -> Spec:
    """The spec without its descriptions: what AnsibleModule's argument_spec takes."""
    out: Spec = {}
    for name, option in spec.items():
        entry = {k: v for k, v in option.items() if k not in ("description", "suboptions")}
        if "suboptions" in option:
            entry["options"] = argspec(option["suboptions"])
        out[name] = entry
    return out


def drop_unset(value: Any, spec: Spec) -> Any:
    """``value`` without the Nones Ansible put in for declared suboptions the user left out."""
    if isinstance(value, list):
        return [drop_unset(item, spec) for item in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        option = spec.get(key)
        if option is None:
            out[key] = item
        elif item is not None:
            sub = option.get("suboptions")
            out[key] = drop_unset(item, sub) if sub else item
    return out
