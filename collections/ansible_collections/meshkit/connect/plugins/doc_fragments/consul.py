# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)
"""Shared documentation of the Consul connection options and the action group."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  host:
    description:
      - Host name or address of the Consul agent's HTTP API.
      - When not set, taken from E(CONSUL_HTTP_ADDR) (V(host:port), V(http://), V(https://) or
        V(unix:///path/to/socket), as Consul's CLI), else V(127.0.0.1).
    type: str
  port:
    description:
      - Port of the Consul agent's HTTP API.
      - When not set, taken from E(CONSUL_HTTP_ADDR) (an address without a port uses the
        scheme's, as Consul's CLI), else V(8500).
    type: int
  scheme:
    description:
      - V(http) or V(https).
      - When not set, taken from E(CONSUL_HTTP_ADDR), else V(https) if E(CONSUL_HTTP_SSL) is
        true, else V(http). An V(http://) address never downgrades E(CONSUL_HTTP_SSL=true).
      - E(CONSUL_HTTP_SSL) and E(CONSUL_HTTP_SSL_VERIFY) take Go's booleans (V(true), V(false),
        V(1), V(0), ...); another value fails the task naming the variable.
    type: str
    choices: [http, https]
  validate_certs:
    description:
      - Verify the agent's TLS certificate. On by default; E(CONSUL_HTTP_SSL_VERIFY=false)
        turns it off when the option is not given.
    type: bool
  ca_path:
    description:
      - CA bundle (PEM) to verify the agent's certificate with. Falls back to E(CONSUL_CACERT).
    type: path
  client_cert:
    description:
      - Client certificate (PEM) for agents that set C(verify_incoming).
        Falls back to E(CONSUL_CLIENT_CERT).
    type: path
  client_key:
    description:
      - Private key of O(client_cert). Falls back to E(CONSUL_CLIENT_KEY).
    type: path
  token:
    description:
      - ACL token, sent only in the C(X-Consul-Token) header and never logged or returned.
      - Falls back to the contents of E(CONSUL_HTTP_TOKEN_FILE), then to E(CONSUL_HTTP_TOKEN)
        (Consul's CLI order; an empty file leaves E(CONSUL_HTTP_TOKEN) in force). A token file
        that cannot be read fails the task naming the variable and the path.
    type: str
  timeout:
    description:
      - Seconds to wait for each HTTP request.
    type: int
    default: 10
"""

    ACTIONGROUP_CONSUL = r"""
attributes:
  action_group:
    description: Use C(group/meshkit.connect.consul) in C(module_defaults) to set the connection
      options once for every module of this collection that talks to Consul.
    support: full
    membership:
      - meshkit.connect.consul
"""
