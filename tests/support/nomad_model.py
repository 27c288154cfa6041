# SPDX-License-Identifier: MPL-2.0
"""The mesh model and job settings the Nomad tests render: web -> db, in any one pattern."""

from __future__ import annotations

from typing import Any

# A user's own consul-template text: must reach Nomad byte for byte in both forms.
USER_TEMPLATE = (
    '{{ with secret "kv/web" }}API_KEY={{ .Data.key }}{{ end }}\n'
    'DB={{ env "NOMAD_UPSTREAM_ADDR_db" }} ALLOC=${NOMAD_ALLOC_ID} 100%{ok}\n'
)


def mesh_data(pattern: str) -> dict[str, Any]:
    """web -> db (service upstream) and web -> db-nearest (prepared query), one pattern."""
    return {
        "meshkit_datacenter": "dc1",
        "meshkit_prepared_queries": [{"name": "db-nearest", "service": "db"}],
        "meshkit_services": [
            {
                "name": "web",
                "port": 8080,
                "tags": ["frontend"],
                "meta": {"team": "shop"},
                "sidecar": {
                    "port": 21000,
                    "upstreams": [
                        {"destination_name": "db", "local_bind_port": 9191},
                        {
                            "destination_name": "db-nearest",
                            "destination_type": "prepared_query",
                            "local_bind_port": 9192,
                        },
                    ],
                },
                "nomad": {
                    "pattern": pattern,
                    "count": 2,
                    "task": {
                        "driver": "exec",
                        "config": {"command": "/srv/web/bin/web", "args": ["--port", "8080"]},
                        "env": {"DB_ADDR": "127.0.0.1:9191"},
                        "resources": {"cpu": 200, "memory": 256},
                        "templates": [
                            {"data": USER_TEMPLATE, "destination": "secrets/web.env", "env": True}
                        ],
                    },
                },
            },
            {
                "name": "db",
                "port": 5432,
                "sidecar": {"port": 21001},
                "nomad": {
                    "pattern": pattern,
                    "task": {
                        "driver": "raw_exec",
                        "config": {"command": "/usr/lib/postgresql/bin/postgres"},
                    },
                },
            },
        ],
    }


def job_settings(**extra: Any) -> dict[str, Any]:
    return {
        "name": "shop",
        "datacenters": ["dc1"],
        "nomad_version": "1.7.7",
        "restart": {"attempts": 3, "interval": "30m", "delay": "15s", "mode": "fail"},
        **extra,
    }
