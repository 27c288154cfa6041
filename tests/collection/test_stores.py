# SPDX-License-Identifier: MPL-2.0
"""Every Consul kind's Store has the one face the lifecycle relies on, against the real dev agent.

For each kind: a fresh store reads None; ``write`` creates; a fresh store reads back exactly
the view written; ``write`` on a store that has read updates in place; ``delete`` removes, and
a fresh store reads None again. Fresh stores each time, so nothing is remembered but what
Consul holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ansible_collections.meshkit.connect.plugins.module_utils.consul_acl import (
    PolicyStore,
    TokenStore,
    check_caller,
    policy_view,
    token_view,
)
from ansible_collections.meshkit.connect.plugins.module_utils.consul_api import (
    Connection,
    ConsulClient,
)
from ansible_collections.meshkit.connect.plugins.module_utils.consul_config_entries import (
    DefaultsEntryStore,
    entry_from_fields,
)
from ansible_collections.meshkit.connect.plugins.module_utils.consul_intentions import (
    intention_store,
    view,
)
from ansible_collections.meshkit.connect.plugins.module_utils.consul_lifecycle import Store
from ansible_collections.meshkit.connect.plugins.module_utils.consul_queries import QueryStore
from ansible_collections.meshkit.connect.plugins.module_utils.consul_services import (
    ServicesStore,
    ServiceStore,
    desired_view,
)
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import parse_mesh
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_render import (
    prepared_query_body,
)
from tests.support.devagent import DevAgent

# A store and the view to write, for the first or the changed version of one object.
Case = Callable[[ConsulClient, bool], tuple[Store, dict[str, Any]]]


def _service(changed: bool) -> Any:
    item = {"name": "db", "port": 5432, "tags": ["v2" if changed else "v1"],
            "sidecar": {"port": 21500, "upstreams": [
                {"destination_name": "cache", "local_bind_port": 9191}]}}  # fmt: skip
    return parse_mesh({"services": [item]}, source="test_stores").services[0]


def service(client: ConsulClient, changed: bool) -> tuple[Store, dict[str, Any]]:
    svc = _service(changed)
    return ServiceStore(client, svc.id, svc), desired_view(svc)


def services(client: ConsulClient, changed: bool) -> tuple[Store, dict[str, Any]]:
    svc = _service(changed)
    return ServicesStore(client, {svc.id: svc}), {svc.id: desired_view(svc)}


def query(client: ConsulClient, changed: bool) -> tuple[Store, dict[str, Any]]:
    item = {"name": "db-nearest", "service": "db", "near": "_agent" if changed else ""}
    parsed = parse_mesh({"prepared_queries": [item]}, source="test_stores").prepared_queries[0]
    return QueryStore(client, "db-nearest"), prepared_query_body(parsed)


def intention_entry(client: ConsulClient, changed: bool) -> tuple[Store, dict[str, Any]]:
    action = "deny" if changed else "allow"
    return intention_store(client, "config_entry", "web", "db"), view("web", "db", action, "")


def intention_legacy(client: ConsulClient, changed: bool) -> tuple[Store, dict[str, Any]]:
    action = "deny" if changed else "allow"
    return intention_store(client, "legacy", "web", "api"), view("web", "api", action, "")


def defaults_entry(client: ConsulClient, changed: bool) -> tuple[Store, dict[str, Any]]:
    fields = {"protocol": "http" if changed else "tcp"}
    want = entry_from_fields("service-defaults", "db", fields)
    return DefaultsEntryStore(client, "service-defaults", "db", None), want


def policy(client: ConsulClient, changed: bool) -> tuple[Store, dict[str, Any]]:
    want = policy_view({"Name": "db-read", "Description": "v2" if changed else "v1",
                        "Rules": 'service "db" { policy = "read" }'})  # fmt: skip
    return PolicyStore(client, "db-read"), want


def token(client: ConsulClient, changed: bool) -> tuple[Store, dict[str, Any]]:
    names = ["web", "db"] if changed else ["web"]
    want = token_view({"Description": "stores test",
                       "ServiceIdentities": [{"ServiceName": n} for n in names]})  # fmt: skip
    return TokenStore(client, None, "stores test"), want


CASES: dict[str, Case] = {
    "service": service,
    "services": services,
    "prepared query": query,
    "intention (config entry)": intention_entry,
    "intention (legacy)": intention_legacy,
    "service-defaults entry": defaults_entry,
    "acl policy": policy,
    "acl token": token,
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsulClient]:
    agent = DevAgent(tmp_path_factory.mktemp("stores"), acl_master_token="stores-master")
    agent.start()
    try:
        host, port = agent.address.rsplit(":", 1)
        params = {"host": host, "port": int(port), "token": agent.acl_master_token}
        conn = Connection.from_params(params, {})
        consul = ConsulClient(conn)
        check_caller(consul)
        yield consul
    finally:
        agent.stop()


@pytest.mark.parametrize("kind", list(CASES))
def test_store_reads_writes_and_deletes_one_object(client: ConsulClient, kind: str) -> None:
    case = CASES[kind]
    store, first = case(client, False)
    assert not store.read(), "the object is absent before the test writes it"
    store.write(first)

    store, changed = case(client, True)
    assert store.read() == first
    assert changed != first
    store.write(changed)

    store, _ = case(client, True)
    assert store.read() == changed
    store.delete()

    store, _ = case(client, False)
    assert not store.read()
