# SPDX-License-Identifier: MPL-2.0
"""ACL policies with rules, token update and service identities, as Consul 1.7 enforces them.

Everything goes through the real dev agent's HTTP API with ACLs on (default deny); the only
direct calls are to the rules parser/authorizer for key rules, which have no HTTP endpoint.
"""

from __future__ import annotations

from typing import Any

import pytest

from meshkit_tools.devagent.aclrules import Authorizer, RulesError, parse
from tests.support.devagent import DevAgent


def policy(agent: DevAgent, name: str, rules: str, **extra: Any) -> dict[str, Any]:
    return dict(agent.ok("PUT", "/v1/acl/policy", {"Name": name, "Rules": rules, **extra}))


def token(agent: DevAgent, *policies: str, services: tuple[str, ...] = ()) -> str:
    body: dict[str, Any] = {"Policies": [{"Name": p} for p in policies]}
    if services:
        body["ServiceIdentities"] = [{"ServiceName": s} for s in services]
    return str(agent.ok("PUT", "/v1/acl/token", body)["SecretID"])


def register(agent: DevAgent, name: str, secret: str, **extra: Any) -> tuple[int, Any]:
    status, _, body = agent.put(
        "/v1/agent/service/register", {"Name": name, "Port": 9000, **extra}, token=secret
    )
    return status, body


def test_policy_crud_hcl_and_json(dev_agent_acl: DevAgent) -> None:
    agent = dev_agent_acl
    created = policy(agent, "db-q-read", 'query "db-q" { policy = "read" }', Description="q")
    assert created["Name"] == "db-q-read" and "Datacenters" not in created
    pid = created["ID"]
    assert agent.ok("GET", f"/v1/acl/policy/{pid}")["Rules"] == 'query "db-q" { policy = "read" }'
    assert agent.ok("GET", "/v1/acl/policy/name/db-q-read")["ID"] == pid
    updated = agent.ok(
        "PUT",
        f"/v1/acl/policy/{pid}",
        {
            "Name": "db-q-read",
            "Rules": '{"query": {"db-q": {"policy": "write"}}}',
            "Datacenters": ["dc1"],
        },
    )
    assert updated["Datacenters"] == ["dc1"] and updated["ModifyIndex"] > created["ModifyIndex"]
    names = [p["Name"] for p in agent.ok("GET", "/v1/acl/policies")]
    assert names[0] == "global-management" and "db-q-read" in names
    # Consul's texts: a bad policy value (Go syntax included), a duplicate name.
    status, _, body = agent.put(
        "/v1/acl/policy", {"Name": "broken", "Rules": 'service "x" { policy = "sometimes" }'}
    )
    assert (status, body) == (
        500,
        'Invalid service policy: &acl.ServiceRule{Name:"x", Policy:"sometimes", '
        'Intentions:"", EnterpriseRule:acl.EnterpriseRule{}}',
    )
    status, _, body = agent.put("/v1/acl/policy", {"Name": "db-q-read", "Rules": ""})
    assert (status, body) == (500, 'Invalid Policy: A Policy with Name "db-q-read" already exists')
    status, _, body = agent.put("/v1/acl/policy", {"Name": "x", "Rules": "service {"})
    assert status == 500 and body.startswith("Failed to parse ACL rules: ")
    assert agent.ok("DELETE", f"/v1/acl/policy/{pid}") is True
    assert agent.get(f"/v1/acl/policy/{pid}")[:3:2] == (403, "ACL not found")
    assert agent.get("/v1/acl/policy/name/db-q-read")[:3:2] == (403, "ACL not found")
    status, _, body = agent.delete("/v1/acl/policy/00000000-0000-0000-0000-000000000001")
    assert (status, body) == (
        500,
        "Delete operation not permitted on the builtin global-management policy",
    )


def test_longest_prefix_wins_and_exact_beats_prefix(dev_agent_acl: DevAgent) -> None:
    agent = dev_agent_acl
    policy(
        agent,
        "layers",
        """
service_prefix "" { policy = "read" }
service_prefix "we" { policy = "deny" }
service_prefix "web" { policy = "write" }
service "web-ro" { policy = "read" }
node_prefix "" { policy = "read" }
""",
    )
    secret = token(agent, "layers")
    assert register(agent, "web-1", secret) == (200, "")  # prefix "web": write
    assert register(agent, "web-ro", secret) == (403, "Permission denied")  # exact: read
    assert register(agent, "wex", secret) == (403, "Permission denied")  # prefix "we": deny
    assert register(agent, "api", secret) == (403, "Permission denied")  # prefix "": read
    agent.register({"Name": "api", "Port": 1})
    agent.register({"Name": "wex", "Port": 2})
    seen = agent.ok("GET", "/v1/agent/services", token=secret)
    assert {s["Service"] for s in seen.values()} == {"api", "web-1"}  # wex denied, not shown
    assert agent.get("/v1/agent/service/wex", token=secret)[:3:2] == (403, "Permission denied")
    # Merged policies: for the same rule deny beats write.
    policy(agent, "deny-web-1", 'service "web-1" { policy = "deny" }')
    policy(agent, "write-web-1", 'service "web-1" { policy = "write" }')
    both = token(agent, "write-web-1", "deny-web-1")
    assert register(agent, "web-1", both) == (403, "Permission denied")


def test_agent_node_query_operator_and_intention_rules(dev_agent_acl: DevAgent) -> None:
    agent = dev_agent_acl
    policy(
        agent,
        "ops",
        """
agent "dev-node" { policy = "read" }
node_prefix "" { policy = "read" }
query_prefix "db-" { policy = "write" }
service "db" {
  policy = "read"
  intentions = "write"
}
operator = "read"
""",
    )
    secret = token(agent, "ops")
    anon = ""
    assert agent.get("/v1/agent/self", token=secret)[0] == 200
    assert agent.get("/v1/agent/self", token=anon)[:3:2] == (403, "Permission denied")
    assert agent.put("/v1/agent/reload", token=secret)[:3:2] == (403, "Permission denied")
    assert len(agent.ok("GET", "/v1/catalog/nodes", token=secret)) == 1
    assert agent.ok("GET", "/v1/catalog/nodes", token=anon) == []
    # Queries: write under db-, nothing else; the list shows only what query:read covers.
    agent.register({"Name": "db", "Port": 5432})
    agent.ok("POST", "/v1/query", {"Name": "db-near", "Service": {"Service": "db"}}, token=secret)
    status, _, body = agent.post(
        "/v1/query", {"Name": "web-near", "Service": {"Service": "web"}}, token=secret
    )
    assert (status, body) == (403, "Permission denied")
    agent.ok("POST", "/v1/query", {"Name": "web-near", "Service": {"Service": "web"}})
    assert [q["Name"] for q in agent.ok("GET", "/v1/query", token=secret)] == ["db-near"]
    assert agent.ok("GET", "/v1/query", token=anon) == []
    # Intentions: write where the destination is db only.
    ixn = {"SourceName": "web", "DestinationName": "db", "Action": "allow"}
    agent.ok("POST", "/v1/connect/intentions", ixn, token=secret)
    status, _, body = agent.post(
        "/v1/connect/intentions", {**ixn, "DestinationName": "api"}, token=secret
    )
    assert (status, body) == (403, "Permission denied")
    # Operator read: CA configuration readable, not writable.
    assert agent.get("/v1/connect/ca/configuration", token=secret)[0] == 200
    status, _, body = agent.put(
        "/v1/connect/ca/configuration", {"Provider": "consul", "Config": {}}, token=secret
    )
    assert (status, body) == (403, "Permission denied")


def test_token_update_links_and_anonymous(dev_agent_acl: DevAgent) -> None:
    agent = dev_agent_acl
    tok = agent.ok(
        "PUT",
        "/v1/acl/token",
        {"Description": "meshkit proxy for web", "ServiceIdentities": [{"ServiceName": "web"}]},
    )
    accessor, secret = tok["AccessorID"], tok["SecretID"]
    assert "Policies" not in tok
    policy(agent, "db-q-read", 'query "db-q" { policy = "read" }')
    agent.ok("POST", "/v1/query", {"Name": "db-q", "Service": {"Service": "db"}})
    assert agent.ok("GET", "/v1/query", token=secret) == []
    updated = agent.ok(
        "PUT",
        f"/v1/acl/token/{accessor}",
        {
            "AccessorID": accessor,
            "Description": "meshkit proxy for web",
            "ServiceIdentities": [{"ServiceName": "web"}],
            "Policies": [{"Name": "db-q-read"}],
        },
    )
    assert updated["SecretID"] == secret and updated["CreateIndex"] == tok["CreateIndex"]
    assert [p["Name"] for p in updated["Policies"]] == ["db-q-read"]
    assert [q["Name"] for q in agent.ok("GET", "/v1/query", token=secret)] == ["db-q"]
    # Unknown policy, mismatched accessor, a secret change: refused with Consul's texts.
    status, _, body = agent.put(f"/v1/acl/token/{accessor}", {"Policies": [{"Name": "nope"}]})
    assert (status, body) == (500, "cannot find policy nope")
    status, _, body = agent.put(f"/v1/acl/token/{accessor}", {"AccessorID": "x"})
    assert (status, body) == (400, "Token Accessor ID in URL and payload do not match")
    # A deleted policy disappears from the tokens that linked it.
    pid = updated["Policies"][0]["ID"]
    agent.ok("DELETE", f"/v1/acl/policy/{pid}")
    assert "Policies" not in agent.ok("GET", f"/v1/acl/token/{accessor}")
    assert agent.ok("GET", "/v1/acl/tokens", token=None)[-2]["Description"] == "Anonymous Token"
    # The anonymous token's policies apply to requests without a token.
    policy(agent, "anon-read", 'service_prefix "" { policy = "read" }')
    agent.register({"Name": "db", "Port": 1})
    assert agent.ok("GET", "/v1/agent/services", token="") == {}
    agent.ok(
        "PUT",
        "/v1/acl/token/00000000-0000-0000-0000-000000000002",
        {"Description": "Anonymous Token", "Policies": [{"Name": "anon-read"}]},
    )
    assert list(agent.ok("GET", "/v1/agent/services", token="")) == ["db"]
    # A service-identity token may not read tokens (acl:read), not even its own.
    assert agent.get(f"/v1/acl/token/{accessor}", token=secret)[:3:2] == (
        403,
        "Permission denied",
    )
    assert agent.ok("GET", "/v1/acl/token/self", token=secret)["AccessorID"] == accessor
    # acl:read reads tokens without their secrets; acl:write sees them.
    policy(agent, "acl-read", 'acl = "read"')
    reader = token(agent, "acl-read")
    seen = agent.ok("GET", f"/v1/acl/token/{accessor}", token=reader)
    assert seen["SecretID"] == "<hidden>" and seen["AccessorID"] == accessor
    assert agent.ok("GET", f"/v1/acl/token/{accessor}")["SecretID"] == secret
    assert agent.put("/v1/acl/token", {}, token=reader)[:3:2] == (403, "Permission denied")


def test_service_identity_least_privilege(dev_agent_acl: DevAgent) -> None:
    agent = dev_agent_acl
    web = token(agent, services=("web",))
    agent.register({"Name": "db", "ID": "db-1", "Port": 5432, "Connect": {"SidecarService": {}}})
    # Its own service and sidecar (also a standalone sidecar registration); not another's.
    assert register(agent, "web", web, Connect={"SidecarService": {}}) == (200, "")
    proxy = {
        "Kind": "connect-proxy",
        "Name": "web-sidecar-proxy",
        "ID": "web-proxy-2",
        "Port": 21500,
        "Proxy": {"DestinationServiceName": "web"},
    }
    assert agent.put("/v1/agent/service/register", proxy, token=web)[0] == 200
    db_proxy = {
        **proxy,
        "Name": "db-sidecar-proxy",
        "ID": "x",
        "Proxy": {"DestinationServiceName": "db"},
    }
    assert agent.put("/v1/agent/service/register", db_proxy, token=web)[:3:2] == (
        403,
        "Permission denied",
    )
    assert agent.put("/v1/agent/service/deregister/db-1", token=web)[:3:2] == (
        403,
        "Permission denied",
    )
    # Reads every service and node; no intention or query writes; its own leaf only.
    assert agent.ok("GET", "/v1/agent/service/db-1", token=web)["Service"] == "db"
    assert agent.ok("GET", "/v1/catalog/services", token=web).keys() >= {"db", "web"}
    for path, body in (
        (
            "/v1/connect/intentions",
            {"SourceName": "web", "DestinationName": "db", "Action": "allow"},
        ),
        (
            "/v1/connect/intentions",
            {"SourceName": "db", "DestinationName": "web", "Action": "allow"},
        ),
        ("/v1/query", {"Name": "web-q", "Service": {"Service": "web"}}),
    ):
        assert agent.post(path, body, token=web)[:3:2] == (403, "Permission denied")
    assert agent.get("/v1/agent/connect/ca/leaf/web", token=web)[0] == 200
    assert agent.get("/v1/agent/connect/ca/leaf/db", token=web)[:3:2] == (
        403,
        "Permission denied",
    )
    td = agent.trust_domain()
    auth = {"ClientCertURI": f"spiffe://{td}/ns/default/dc/dc1/svc/db"}
    assert agent.ok("POST", "/v1/agent/connect/authorize", {**auth, "Target": "web"}, token=web)
    assert agent.post("/v1/agent/connect/authorize", {**auth, "Target": "db"}, token=web)[:3:2] == (
        403,
        "Permission denied",
    )
    assert agent.get("/v1/agent/services", token="nope")[:3:2] == (403, "ACL not found")


def test_rules_parser_and_authorizer_for_keys() -> None:
    auth = Authorizer.build(
        [
            parse('key_prefix "" { policy = "read" }\nkey_prefix "app/" { policy = "write" }'),
            parse('{"key": {"app/secret": {"policy": "deny"}}}'),
        ],
        default_allow=False,
    )
    assert auth.key_read("other") and not auth.key_write("other")
    assert auth.key_write("app/config")
    assert not auth.key_read("app/secret")
    assert not Authorizer.build([], default_allow=False).key_read("x")
    assert Authorizer.build([], default_allow=True).key_write("x")
    with pytest.raises(RulesError, match=r'^Invalid key_prefix policy: &acl.KeyRule\{Prefix:"a"'):
        parse('key_prefix "a" { policy = "all" }')
    with pytest.raises(RulesError, match=r'^Invalid operator policy: "sudo"$'):
        parse('operator = "sudo"')
    with pytest.raises(RulesError, match="intentions policy"):
        parse('service "a" {\n policy = "read"\n intentions = "maybe"\n}')
