# SPDX-License-Identifier: MPL-2.0
"""A valid mesh model (the example of docs/mesh-model.md), for tests that start from one."""

from __future__ import annotations

from typing import Any


def good() -> dict[str, Any]:
    """The example of docs/mesh-model.md, valid as written."""
    return {
        "meshkit_datacenter": "dc1",
        "meshkit_prepared_queries": [
            {
                "name": "db-nearest",
                "service": "db",
                "near": "_agent",
                "failover": {"nearest_n": 0, "datacenters": []},
            }
        ],
        "meshkit_intentions": [
            {"source": "web", "destination": "db", "action": "allow", "description": "web reads db"}
        ],
        "meshkit_services": [
            {
                "name": "db",
                "port": 5432,
                "tags": ["primary"],
                "meta": {"team": "data"},
                "checks": [{"name": "db tcp", "tcp": "127.0.0.1:5432", "interval": "10s"}],
                "sidecar": {"port": "auto", "admin_port": 19001},
            },
            {
                "name": "web",
                "port": 8080,
                "sidecar": {
                    "port": 21500,
                    "admin_port": 19002,
                    "upstreams": [
                        {"destination_name": "db", "local_bind_port": 9191},
                        {
                            "destination_name": "db-nearest",
                            "destination_type": "prepared_query",
                            "local_bind_port": 9192,
                            "config": {"connect_timeout_ms": 2000},
                        },
                    ],
                },
            },
        ],
    }
