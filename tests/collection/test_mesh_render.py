# SPDX-License-Identifier: MPL-2.0
"""Renderers: exact shapes, key spelling per form, and byte-for-byte determinism."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import (
    parse_mesh,
)
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_render import (
    CHECKS_META_KEY,
    agent_config_file,
    agent_config_service,
    agent_parent_registration,
    agent_proxy_registration,
    agent_registration,
    checks_fingerprint,
    intention_body,
    intentions_config_entries,
    prepared_query_body,
)
from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import (
    ModelError,
)
from tests.support.mesh_examples import good

OPAQUE = {"Config", "config", "Meta", "meta", "Header", "header"}


def keys(value: Any) -> set[str]:
    """Every key of a rendered document, outside the opaque maps Consul passes through."""
    out: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            out.add(k)
            if k not in OPAQUE:
                out |= keys(v)
    elif isinstance(value, list):
        for v in value:
            out |= keys(v)
    return out


def test_agent_registration_exact_body() -> None:
    web = parse_mesh(good()).services[1]
    assert agent_registration(web) == {
        "ID": "web",
        "Name": "web",
        "Port": 8080,
        "Address": "127.0.0.1",
        "Tags": [],
        "Meta": {},
        "Connect": {
            "SidecarService": {
                "Port": 21500,
                "Proxy": {
                    "LocalServiceAddress": "127.0.0.1",
                    "LocalServicePort": 8080,
                    "Upstreams": [
                        {
                            "DestinationType": "service",
                            "DestinationName": "db",
                            "LocalBindAddress": "127.0.0.1",
                            "LocalBindPort": 9191,
                        },
                        {
                            "DestinationType": "prepared_query",
                            "DestinationName": "db-nearest",
                            "LocalBindAddress": "127.0.0.1",
                            "LocalBindPort": 9192,
                            "Config": {"connect_timeout_ms": 2000},
                        },
                    ],
                },
            }
        },
    }


def test_api_form_is_camel_case_and_file_form_snake_case() -> None:
    mesh = parse_mesh(good())
    api_keys = set().union(*(keys(agent_registration(s)) for s in mesh.services))
    file_keys = keys(json.loads(agent_config_file(mesh.services)))
    assert api_keys and all(k[0].isupper() and "_" not in k for k in api_keys), api_keys
    assert file_keys and all(k == k.lower() for k in file_keys), file_keys
    assert {"sidecar_service", "local_bind_port", "destination_type"} <= file_keys


def test_auto_sidecar_port_and_empty_address_are_left_to_consul() -> None:
    db = parse_mesh(good()).services[0]
    sidecar = agent_registration(db)["Connect"]["SidecarService"]
    assert "Port" not in sidecar and "Address" not in sidecar
    assert "Checks" not in sidecar  # Consul's default checks dial the loopback listener
    data = good()
    data["meshkit_services"][0]["sidecar"]["address"] = "192.0.2.10"
    data["meshkit_services"][0]["sidecar"]["port"] = 21000
    sidecar = agent_registration(parse_mesh(data).services[0])["Connect"]["SidecarService"]
    assert sidecar["Address"] == "192.0.2.10"


def test_a_sidecar_on_a_host_address_gets_checks_at_that_address() -> None:
    """Consul 1.7's default check dials local_service_address:port (issue 12)."""
    data = good()
    data["meshkit_services"][0]["sidecar"].update(address="192.0.2.10", port=21000)
    db = parse_mesh(data).services[0]
    sidecar = agent_registration(db)["Connect"]["SidecarService"]
    assert sidecar["Checks"] == [
        {"Name": "Connect Sidecar Listening", "TCP": "192.0.2.10:21000", "Interval": "10s"},
        {"Name": f"Connect Sidecar Aliasing {db.id}", "AliasService": db.id},
    ]
    snake = agent_config_service(db)["connect"]["sidecar_service"]["checks"]
    assert snake[0] == {"name": "Connect Sidecar Listening", "tcp": "192.0.2.10:21000",
                        "interval": "10s"}  # fmt: skip
    assert snake[1]["alias_service"] == db.id
    # The standalone form gets the same two (Consul adds none to a connect-proxy of its own).
    assert agent_proxy_registration(db)["Checks"] == sidecar["Checks"]
    # Without a fixed port there is nothing to dial: refused, naming the field and the fix.
    data["meshkit_services"][0]["sidecar"].pop("port")
    with pytest.raises(ModelError) as err:
        parse_mesh(data)
    assert "sidecar.port" in str(err.value) and "set sidecar.port" in str(err.value)


def test_checks_fingerprint_tracks_definitions() -> None:
    db = parse_mesh(good()).services[0]
    body = agent_registration(db)
    assert body["Checks"] == [{"Name": "db tcp", "TCP": "127.0.0.1:5432", "Interval": "10s"}]
    assert body["Meta"] == {"team": "data", CHECKS_META_KEY: checks_fingerprint(db.checks)}
    data = good()
    data["meshkit_services"][0]["checks"][0]["interval"] = "20s"
    changed = parse_mesh(data).services[0]
    assert checks_fingerprint(changed.checks) != checks_fingerprint(db.checks)
    web = parse_mesh(good()).services[1]
    assert CHECKS_META_KEY not in agent_registration(web)["Meta"]


def test_config_file_is_deterministic_byte_for_byte() -> None:
    first = agent_config_file(parse_mesh(good()).services)
    for seed in range(5):
        data = good()
        svc = data["meshkit_services"][0]
        items = list(svc.items())
        random.Random(seed).shuffle(items)  # key order of the input must not matter
        data["meshkit_services"][0] = dict(items)
        assert agent_config_file(parse_mesh(data).services) == first
    assert first.endswith("}\n")
    doc = json.loads(first)
    assert [s["id"] for s in doc["services"]] == ["db", "web"]
    assert doc["services"][0]["connect"]["sidecar_service"]["proxy"]["local_service_port"] == 5432


def test_prepared_query_body() -> None:
    query = parse_mesh(good()).prepared_queries[0]
    assert prepared_query_body(query) == {
        "Name": "db-nearest",
        "Service": {
            "Service": "db",
            "Failover": {"NearestN": 0, "Datacenters": []},
            "OnlyPassing": True,
            "Near": "_agent",
            "Tags": [],
            "Connect": True,
        },
    }


def test_intention_bodies_and_config_entries() -> None:
    data = {
        "intentions": [
            {"source": "*", "destination": "db", "action": "deny"},
            {"source": "web", "destination": "db", "description": "web reads db"},
            {"source": "api", "destination": "db"},
            {"source": "web", "destination": "api"},
        ]
    }
    mesh = parse_mesh(data)
    assert intention_body(mesh.intentions[1]) == {
        "SourceName": "web",
        "DestinationName": "db",
        "SourceType": "consul",
        "Action": "allow",
        "Description": "web reads db",
    }
    entries = intentions_config_entries(mesh.intentions)
    assert [e["Name"] for e in entries] == ["api", "db"]
    assert [s["Name"] for s in entries[1]["Sources"]] == ["api", "web", "*"]
    assert all(e["Kind"] == "service-intentions" for e in entries)


def test_standalone_proxy_registration_mirrors_the_sidecar() -> None:
    web = parse_mesh(good()).services[1]
    proxy = agent_proxy_registration(web)
    nested = agent_registration(web)["Connect"]["SidecarService"]
    assert proxy["Kind"] == "connect-proxy" and proxy["ID"] == "web-sidecar-proxy"
    assert proxy["Port"] == nested["Port"] == 21500
    assert proxy["Proxy"]["Upstreams"] == nested["Proxy"]["Upstreams"]
    assert proxy["Proxy"]["DestinationServiceID"] == "web"
    assert [c["Name"] for c in proxy["Checks"]] == [
        "Connect Sidecar Listening",
        "Connect Sidecar Aliasing web",
    ]
    assert "Connect" not in agent_parent_registration(web)
    db = parse_mesh(good()).services[0]  # auto port: only sidecar_service gets one
    with pytest.raises(ValueError, match="fixed sidecar port"):
        agent_proxy_registration(db)
