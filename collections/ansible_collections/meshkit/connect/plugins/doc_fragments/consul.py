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
      - When not set, taken from E(CONSUL_HTTP_ADDR) (for example V(https://127.0.0.1:8501)),
        else V(localhost).
    type: str
  port:
    description:
      - Port of the Consul agent's HTTP API.
      - When not set, taken from E(CONSUL_HTTP_ADDR), else V(8500).
    type: int
  scheme:
    description:
      - V(http) or V(https).
      - When not set, taken from E(CONSUL_HTTP_ADDR), else V(https) if E(CONSUL_HTTP_SSL) is
        true, else V(http).
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
      - Falls back to E(CONSUL_HTTP_TOKEN), then to the contents of E(CONSUL_HTTP_TOKEN_FILE).
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
