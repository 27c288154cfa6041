# SPDX-License-Identifier: MPL-2.0
"""The mesh model: every validation rule has its own case, and valid input parses fully."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ansible_collections.meshkit.connect.plugins.module_utils.mesh_listeners import host_listeners
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import (
    Mesh,
    as_plain,
    parse_mesh,
)
from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import (
    ModelError,
)
from tests.support.mesh_examples import good


def test_valid_model_parses_with_defaults() -> None:
    mesh = parse_mesh(good())
    assert isinstance(mesh, Mesh)
    db, web = mesh.services
    assert (db.id, db.address, db.sidecar and db.sidecar.port) == ("db", "127.0.0.1", None)
    assert db.sidecar is not None and db.sidecar.local_service_port == 5432
    assert db.sidecar.local_service_address == "127.0.0.1"
    assert web.sidecar is not None and web.sidecar.port == 21500
    assert [u.destination_type for u in web.sidecar.upstreams] == ["service", "prepared_query"]
    assert mesh.prepared_queries[0].only_passing is True and mesh.prepared_queries[0].connect
    assert mesh.intentions[0].action == "allow"
    assert web.sidecar_id == "web-sidecar-proxy"


def test_unprefixed_keys_and_string_ports_are_accepted() -> None:
    data = {"services": [{"name": "api", "port": "8080"}], "datacenter": "eu-1"}
    mesh = parse_mesh(data)
    assert mesh.services[0].port == 8080 and mesh.datacenter == "eu-1"


def test_as_plain_is_json_shaped() -> None:
    plain = as_plain(parse_mesh(good()))
    assert plain["services"][1]["sidecar"]["upstreams"][1]["config"] == {"connect_timeout_ms": 2000}
    assert isinstance(plain["services"][0]["tags"], list)


def test_all_problems_reported_at_once() -> None:
    data = good()
    data["meshkit_services"][0]["name"] = "DB"
    data["meshkit_services"][1]["sidecar"]["upstreams"][0]["local_bind_address"] = "10.0.0.9"
    data["meshkit_intentions"][0]["action"] = "permit"
    with pytest.raises(ModelError) as err:
        parse_mesh(data, source="host_vars/h1.yml")
    assert len(err.value.problems) == 3
    assert str(err.value).startswith("host_vars/h1.yml: 3 problem(s)")


def _mutate(path: list[Any], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(good())
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    elif isinstance(target, list) and path[-1] == len(target):
        target.append(value)
    else:
        target[path[-1]] = value
    return data


_DELETE = object()
S = "meshkit_services"
UP = [S, 1, "sidecar", "upstreams"]

# (id, path to change, new value, problem path fragment, message fragment)
CASES: list[tuple[str, list[Any], Any, str, str]] = [
    ("top-level-typo", [], None, "meshkit_servics", "unknown key"),
    ("datacenter-name", ["meshkit_datacenter"], "DC 1", "datacenter", "not a valid datacenter"),
    ("service-not-mapping", [S, 0], "db", "services[0]", "expected a mapping"),
    ("services-not-list", [S], "db", "services", "expected a list"),
    ("unknown-service-key", [S, 0, "prot"], 1, "(db).prot", "did you mean 'port'"),
    ("service-name-empty", [S, 0, "name"], "", "services[0].name", "service name is empty"),
    ("service-name-upper", [S, 0, "name"], "Db", "(Db).name", "Nomad refuses upper case"),
    ("service-name-wildcard", [S, 0, "name"], "*", "(*).name", "wildcard"),
    ("service-name-underscore", [S, 0, "name"], "my_db", "(my_db).name", "not a valid name"),
    ("service-id-invalid", [S, 0, "id"], "db/1", "(db).id", "cannot be used in URLs"),
    ("service-name-not-string", [S, 0, "name"], ["db"], "services[0].name", "expected a string"),
    ("port-not-number", [S, 0, "port"], "five", "(db).port", "expected a number"),
    ("port-bool", [S, 0, "port"], True, "(db).port", "expected a number"),
    ("port-out-of-range", [S, 0, "port"], 70000, "(db).port", "out of range"),
    ("address-not-ip", [S, 0, "address"], "db.local", "(db).address", "not an IP address"),
    ("address-wildcard", [S, 0, "address"], "0.0.0.0", "(db).address", "wildcard address"),
    ("address-non-loopback", [S, 0, "address"], "10.0.0.5", "(db).address", "not a loopback"),
    ("address-v6-wildcard", [S, 0, "address"], "::", "(db).address", "wildcard address"),
    ("bool-invalid", [S, 0, "allow_non_loopback"], "maybe", "allow_non_loopback", "true or false"),
    ("tags-not-list", [S, 0, "tags"], "primary", "(db).tags", "list of strings"),
    ("tag-not-string", [S, 0, "tags"], [{"a": 1}], "(db).tags[0]", "expected a string"),
    ("meta-key-invalid", [S, 0, "meta"], {"team name": "x"}, "meta.team name", "meta key"),
    ("meta-key-reserved", [S, 0, "meta"], {"consul-x": "x"}, "meta.consul-x", "meta key"),
    ("meta-value-mapping", [S, 0, "meta"], {"team": {"a": 1}}, "meta.team", "strings"),
    ("meta-not-mapping", [S, 0, "meta"], ["x"], "(db).meta", "expected a mapping"),
    ("nomad-group-upper", [S, 0, "nomad"], {"group": "DB"}, "nomad.group", "Nomad refuses"),
    ("check-no-name", [S, 0, "checks", 0, "name"], "", "checks[0].name", "has no name"),
    ("check-two-kinds", [S, 0, "checks", 0, "ttl"], "30s", "checks[0]", "exactly one of"),
    ("check-no-kind", [S, 0, "checks", 0, "tcp"], _DELETE, "checks[0]", "exactly one of"),
    (
        "check-no-interval",
        [S, 0, "checks", 0, "interval"],
        _DELETE,
        "interval",
        "needs an interval",
    ),
    ("check-bad-duration", [S, 0, "checks", 0, "interval"], "10 s", "interval", "not a duration"),
    ("check-bad-status", [S, 0, "checks", 0, "status"], "ok", "status", "initial status"),
    ("check-unknown-key", [S, 0, "checks", 0, "intervall"], "1s", "intervall", "did you mean"),
    ("sidecar-not-mapping", [S, 0, "sidecar"], "auto", "(db).sidecar", "expected a mapping"),
    ("sidecar-unknown-key", [S, 0, "sidecar", "upstream"], [], "sidecar.upstream", "did you mean"),
    ("sidecar-port-bad", [S, 0, "sidecar", "port"], "any", "sidecar.port", "expected a number"),
    ("sidecar-address-wild", [S, 0, "sidecar", "address"], "0.0.0.0", "sidecar.address", "refused"),
    ("sidecar-address-name", [S, 0, "sidecar", "address"], "h1", "sidecar.address", "not an IP"),
    (
        "sidecar-local-service-address",
        [S, 0, "sidecar", "local_service_address"],
        "192.168.1.4",
        "sidecar.local_service_address",
        "not a loopback",
    ),
    ("sidecar-no-app-port", [S, 0, "port"], _DELETE, "local_service_port", "no port for it"),
    ("upstreams-not-list", [*UP], {"a": 1}, "sidecar.upstreams", "expected a list"),
    ("upstream-name-empty", [*UP, 0, "destination_name"], "", "destination_name", "is empty"),
    ("upstream-wildcard", [*UP, 0, "destination_name"], "*", "destination_name", "wildcard"),
    ("upstream-type", [*UP, 0, "destination_type"], "node", "destination_type", "unknown dest"),
    ("upstream-dc", [*UP, 0, "datacenter"], "DC2", "(db).datacenter", "datacenter name"),
    ("upstream-bind-wild", [*UP, 0, "local_bind_address"], "0.0.0.0", "local_bind_address", "wild"),
    (
        "upstream-bind-non-loopback",
        [*UP, 0, "local_bind_address"],
        "10.0.0.1",
        "upstreams[0] (db).local_bind_address",
        "not a loopback",
    ),
    ("upstream-no-port", [*UP, 0, "local_bind_port"], _DELETE, "local_bind_port", "no local_bind"),
    ("upstream-unknown-key", [*UP, 0, "local_port"], 1, "local_port", "did you mean"),
    (
        "upstream-unknown-query",
        [*UP, 1, "destination_name"],
        "db-far",
        "upstreams[1] (db-far).destination_name",
        "does not define and Consul does not hold",
    ),
    (
        "upstream-duplicate",
        [*UP, 1],
        {"destination_name": "db", "local_bind_port": 9300},
        "upstreams[1]",
        "duplicate upstream",
    ),
    (
        "query-name-invalid",
        ["meshkit_prepared_queries", 0, "name"],
        "DB nearest",
        "prepared_queries[0] (DB nearest).name",
        "not a valid name",
    ),
    ("query-service-empty", ["meshkit_prepared_queries", 0, "service"], "", ".service", "empty"),
    (
        "query-nearest-n",
        ["meshkit_prepared_queries", 0, "failover", "nearest_n"],
        -1,
        "failover.nearest_n",
        "out of range",
    ),
    (
        "query-failover-dc",
        ["meshkit_prepared_queries", 0, "failover", "datacenters"],
        ["dc 2"],
        "failover.datacenters[0]",
        "not a datacenter",
    ),
    (
        "query-failover-key",
        ["meshkit_prepared_queries", 0, "failover", "nearest"],
        1,
        "failover.nearest",
        "did you mean",
    ),
    (
        "query-duplicate",
        ["meshkit_prepared_queries", 1],
        {"name": "db-nearest", "service": "db"},
        "prepared_queries[1]",
        "duplicate query name",
    ),
    ("intention-dest-wild", ["meshkit_intentions", 0, "destination"], "*", "destination", "wild"),
    ("intention-source-bad", ["meshkit_intentions", 0, "source"], "Web", ".source", "not a valid"),
    (
        "intention-action",
        ["meshkit_intentions", 0, "action"],
        "permit",
        ".action",
        "unknown action",
    ),
    (
        "intention-duplicate",
        ["meshkit_intentions", 1],
        {"source": "web", "destination": "db", "action": "deny"},
        "intentions[1]",
        "duplicate intention",
    ),
    ("service-id-duplicate", [S, 1, "id"], "db", "services[1] (web).id", "duplicate service id"),
    (
        "sidecar-id-collision",
        [S, 1, "id"],
        "db-sidecar-proxy",
        "services[1] (web).id",
        "duplicate service id",
    ),
    ("clash-app-app", [S, 1, "port"], 5432, "services[1] (web).port", "clashes with service 'db'"),
    (
        "clash-upstream-app",
        [*UP, 0, "local_bind_port"],
        5432,
        "(db).local_bind_port",
        "clashes with service 'db' port",
    ),
    (
        "clash-admin-admin",
        [S, 1, "sidecar", "admin_port"],
        19001,
        "(web).sidecar.admin_port",
        "clashes with service 'db' sidecar admin_port",
    ),
    (
        "clash-sidecar-app",
        [S, 1, "sidecar", "port"],
        8080,
        "(web).sidecar.port",
        "clashes with service 'web' port",
    ),
    (
        "clash-upstream-upstream",
        [*UP, 1, "local_bind_port"],
        9191,
        "upstreams[1] (db-nearest).local_bind_port",
        "clashes with service 'web' upstream 'db'",
    ),
    ("auto-range-app", [S, 1, "port"], 21000, "(web).port", "inside 21000-21255"),
    ("auto-range-upstream", [*UP, 0, "local_bind_port"], 21255, "local_bind_port", "inside 21000"),
    ("auto-range-admin", [S, 0, "sidecar", "admin_port"], 21100, "admin_port", "inside 21000"),
]


@pytest.mark.parametrize(("path", "value", "where", "what"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_each_validation_error(path: list[Any], value: Any, where: str, what: str) -> None:
    data = {"meshkit_servics": []} if not path else _mutate(path, value)
    with pytest.raises(ModelError) as err:
        parse_mesh(data, source="vars.yml")
    hits = [p for p in err.value.problems if where in p.path and what in p.message + p.fix]
    assert hits, "\n".join(str(p) for p in err.value.problems)
    assert all(p.fix for p in err.value.problems)


def test_problem_names_the_service_and_field() -> None:
    data = _mutate([*UP, 0, "local_bind_address"], "10.0.0.1")
    with pytest.raises(ModelError) as err:
        parse_mesh(data)
    (problem,) = err.value.problems
    assert problem.path == "services[1] (web).sidecar.upstreams[0] (db).local_bind_address"
    assert "service 'web'" in problem.message and "local_bind_address" in problem.message


def test_allow_non_loopback_overrides_per_item() -> None:
    data = _mutate([*UP, 0, "local_bind_address"], "10.0.0.1")
    data[S][1]["sidecar"]["upstreams"][0]["allow_non_loopback"] = True
    data[S][0]["address"] = "10.0.0.5"
    data[S][0]["allow_non_loopback"] = True
    mesh = parse_mesh(data)
    assert mesh.services[0].address == "10.0.0.5"
    assert mesh.services[0].sidecar is not None
    assert mesh.services[0].sidecar.local_service_address == "10.0.0.5"
    # the override is per item: the other upstream still has to be loopback
    data[S][1]["sidecar"]["upstreams"][1]["local_bind_address"] = "10.0.0.2"
    with pytest.raises(ModelError, match="db-nearest"):
        parse_mesh(data)


def test_known_queries_satisfy_prepared_query_upstreams() -> None:
    data = _mutate([*UP, 1, "destination_name"], "db-far")
    mesh = parse_mesh(data, known_queries=["db-far"])
    assert mesh.services[1].sidecar is not None
    assert mesh.services[1].sidecar.upstreams[1].destination_name == "db-far"


def test_wildcard_bind_clashes_with_specific_address_of_same_family_only() -> None:
    base = {"name": "a", "port": 7000, "address": "0.0.0.0", "allow_non_loopback": True}
    other = {"name": "b", "port": 7000, "address": "127.0.0.2"}
    v6 = {"name": "c", "port": 7000, "address": "::1"}
    with pytest.raises(ModelError, match="clashes"):
        parse_mesh(
            {"services": [{**base, "address": "127.0.0.1"}, {**other, "address": "127.0.0.1"}]}
        )
    # 0.0.0.0 itself is refused by Consul as a service address; check the overlap rule directly
    assert parse_mesh({"services": [other, v6]}).services[1].address == "::1"


def test_sidecar_fixed_port_may_sit_in_the_auto_range() -> None:
    listeners = host_listeners(parse_mesh(good()).services)
    kinds = {(x.kind, x.port) for x in listeners}
    assert ("sidecar", 21500) in kinds and ("admin", 19001) in kinds and ("app", 5432) in kinds
    assert ("upstream", 9192) in kinds
    assert not any(x.kind == "sidecar" and x.port is None for x in listeners)


def test_not_a_mapping_at_top_level() -> None:
    with pytest.raises(ModelError, match="expected a mapping"):
        not_a_mapping: Any = ["services"]
        parse_mesh(not_a_mapping)


def test_inventory_vars_with_other_keys_are_fine() -> None:
    data = good()
    data["meshkit_proxy_version"] = "0.1.0"
    data["ansible_user"] = "root"
    assert len(parse_mesh(data).services) == 2
