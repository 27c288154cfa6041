# SPDX-License-Identifier: MPL-2.0
"""The mesh model's ACL fields: per-service extra policies and identities, the mesh-wide mode
and the policies the rollout creates; bad input names the field and the fix."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import (
    AclPolicy,
    ServiceAcl,
    parse_mesh,
)
from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import (
    ModelError,
)


def model(**acl: Any) -> dict[str, Any]:
    return {
        "meshkit_acl_mode": "per_service",
        "meshkit_acl_policies": [
            {"name": "db-q-read", "rules": 'query "db-q" { policy = "read" }'},
            {"name": "kv", "rules": {"key_prefix": {"web/": {"policy": "read"}}}},
        ],
        "meshkit_acl_known_policies": ["ops-read"],
        "meshkit_services": [
            {"name": "web", "port": 8080, "sidecar": {"port": 21000}, "acl": acl},
            {"name": "web-admin", "port": 8081, "sidecar": {"port": 21001}},
        ],
    }


def test_acl_fields_parse() -> None:
    mesh = parse_mesh(
        model(policies=["db-q-read", "ops-read", "kv"], service_identities=["web-admin"])
    )
    assert mesh.acl.mode == "per_service"
    assert mesh.acl.policies[0] == AclPolicy("db-q-read", 'query "db-q" { policy = "read" }')
    assert '"key_prefix"' in mesh.acl.policies[1].rules  # a mapping becomes JSON rules
    assert mesh.services[0].acl == ServiceAcl(("db-q-read", "ops-read", "kv"), ("web-admin",))
    assert mesh.services[1].acl == ServiceAcl()
    assert parse_mesh({"services": []}).acl.mode == "shared"


@pytest.mark.parametrize(
    ("acl", "top", "expect"),
    [
        (
            {"policies": ["nope"]},
            {},
            "services[0] (web).acl.policies[0]: unknown ACL policy 'nope' (fix: define it in "
            "meshkit_acl_policies",
        ),
        (
            {"service_identities": ["db"]},
            {},
            "services[0] (web).acl.service_identities[0]: 'db' is not a service of this host",
        ),
        ({"tokens": 1}, {}, "services[0] (web).acl.tokens: unknown key"),
        ({}, {"meshkit_acl_mode": "sometimes"}, "acl_mode: unknown ACL mode 'sometimes'"),
        (
            {},
            {"meshkit_acl_policies": [{"name": "a b", "rules": "x"}]},
            "acl_policies[0] (a b).name: 'a b' is not a valid ACL policy name",
        ),
        (
            {},
            {"meshkit_acl_policies": [{"name": "empty"}]},
            "acl_policies[0] (empty).rules: rules are missing",
        ),
    ],
)
def test_bad_acl_input_names_the_field(
    acl: dict[str, Any], top: dict[str, Any], expect: str
) -> None:
    with pytest.raises(ModelError) as err:
        parse_mesh({**model(**acl), **top}, source="host_vars/app1")
    assert any(str(p).startswith(expect) for p in err.value.problems), err.value
    assert str(err.value).startswith("host_vars/app1: ")


def test_token_specs_and_stale_tokens_filters() -> None:
    from ansible_collections.meshkit.connect.plugins.filter.mesh_acl import (
        mesh_acl_stale_tokens,
        mesh_acl_tokens,
    )

    services = [
        {"name": "web", "id": "web-1", "port": 8080, "sidecar": {"port": 21000},
         "acl": {"policies": ["db-q-read"], "service_identities": ["web-admin"]}},
        {"name": "web-admin", "port": 8081},
    ]  # fmt: skip
    specs = mesh_acl_tokens(services, "app1")
    assert specs == [
        {
            "id": "web-1",
            "description": "meshkit proxy web-1 on app1",
            "service_identities": [{"service_name": "web"}, {"service_name": "web-admin"}],
            "policies": ["db-q-read"],
        },
        {
            "id": "web-admin",
            "description": "meshkit proxy web-admin on app1",
            "service_identities": [{"service_name": "web-admin"}],
            "policies": [],
        },
    ]
    listed = [
        {"AccessorID": "a", "Description": "meshkit proxy web-1 on app1"},
        {"AccessorID": "b", "Description": "meshkit proxy old on app1"},
        {"AccessorID": "c", "Description": "meshkit proxy old on app10"},
        {"AccessorID": "d", "Description": "Master Token"},
    ]
    stale = mesh_acl_stale_tokens(listed, specs, "app1")
    assert [(t["AccessorID"], t["service_id"]) for t in stale] == [("b", "old")]
