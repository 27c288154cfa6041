# SPDX-License-Identifier: MPL-2.0
"""Service definitions from Consul's documentation of 1.2-1.7 (and the recorded bodies of
consul-1.7.14-edges e31-e35), one per older proxy form, for the conversion tests."""

from __future__ import annotations

from typing import Any

# docs/connect/proxies.html (1.2): an unmanaged proxy registered by API, with the 1.2-1.3
# top-level ProxyDestination (also recorded as e31).
PROXY_DESTINATION_API: dict[str, Any] = {
    "Name": "redis-proxy", "Kind": "connect-proxy", "ProxyDestination": "redis", "Port": 8181,
}  # fmt: skip
# docs/agent/services.html (1.2): the same in a config file.
PROXY_DESTINATION_FILE: dict[str, Any] = {
    "name": "redis-proxy", "kind": "connect-proxy", "proxy_destination": "redis", "port": 8181,
}  # fmt: skip

# docs/connect/proxies/managed-deprecated.html, "Minimal Configuration" (also e32).
MANAGED_MINIMAL: dict[str, Any] = {"name": "redis", "port": 6379, "connect": {"proxy": {}}}

# "Upstream Configuration" (1.3: upstreams directly under connect.proxy).
MANAGED_UPSTREAMS: dict[str, Any] = {
    "name": "web", "port": 8080,
    "connect": {"proxy": {"upstreams": [{"destination_name": "redis", "local_bind_port": 1234}]}},
}  # fmt: skip

# docs/connect/configuration.html (1.2): the built-in proxy's options with the upstreams inside
# the opaque config (destination_datacenter, connect_timeout_ms per upstream).
MANAGED_CONFIG_UPSTREAMS: dict[str, Any] = {
    "name": "web", "port": 8080,
    "connect": {"proxy": {"config": {
        "bind_address": "0.0.0.0",
        "bind_port": 20000,
        "local_service_address": "127.0.0.1:8080",
        "local_connect_timeout_ms": 1000,
        "handshake_timeout_ms": 10000,
        "upstreams": [{
            "destination_type": "service",
            "destination_name": "redis",
            "destination_datacenter": "dc1",
            "local_bind_address": "127.0.0.1",
            "local_bind_port": 1234,
            "connect_timeout_ms": 10000,
        }],
    }}},
}  # fmt: skip
# e33: the same shape registered by API (CamelCase outside, snake_case inside Config).
MANAGED_CONFIG_UPSTREAMS_API: dict[str, Any] = {
    "Name": "web2", "Port": 8080,
    "Connect": {"Proxy": {"Config": {"upstreams": [
        {"destination_name": "redis", "local_bind_port": 1234}]}}},
}  # fmt: skip

# "Custom Managed Proxy": a command meshkit cannot run.
MANAGED_CUSTOM: dict[str, Any] = {
    "name": "web", "port": 8080,
    "connect": {"proxy": {"exec_mode": "daemon", "command": ["/usr/bin/my-proxy", "-flag-example"],
                          "config": {"foo": "bar"}}},
}  # fmt: skip

# docs/agent/services.html (1.6-1.7) "complete configuration example", its connect-proxy part,
# with a prepared-query upstream as e34 registered it: snake_case (file) and CamelCase (API).
STANDALONE_SNAKE: dict[str, Any] = {
    "name": "redis-proxy", "kind": "connect-proxy", "port": 8181,
    "proxy": {
        "destination_service_name": "redis",
        "destination_service_id": "redis1",
        "local_service_address": "127.0.0.1",
        "local_service_port": 9090,
        "config": {},
        "upstreams": [{"destination_type": "prepared_query", "destination_name": "q-empty",
                       "local_bind_port": 1235}],
        "mesh_gateway": {"mode": "local"},
    },
}  # fmt: skip
STANDALONE_CAMEL: dict[str, Any] = {
    "Name": "redis-proxy", "Kind": "connect-proxy", "Port": 8181,
    "Proxy": {
        "DestinationServiceName": "redis",
        "DestinationServiceID": "redis1",
        "LocalServiceAddress": "127.0.0.1",
        "LocalServicePort": 9090,
        "Config": {},
        "Upstreams": [{"DestinationType": "prepared_query", "DestinationName": "q-empty",
                       "LocalBindPort": 1235}],
    },
}  # fmt: skip
