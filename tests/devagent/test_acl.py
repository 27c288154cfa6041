# SPDX-License-Identifier: MPL-2.0
"""ACLs: master token, service-identity tokens with Consul's grants, 403 texts."""

from __future__ import annotations

from tests.support.devagent import DevAgent


def test_acl_tokens_with_service_identities(dev_agent_acl: DevAgent) -> None:
    agent = dev_agent_acl
    # No token: denied (default policy deny once ACLs are on); unknown token: ACL not found.
    status, _, body = agent.put("/v1/agent/service/register", {"Name": "web", "Port": 1}, token="")
    assert (status, body) == (403, "Permission denied")
    status, _, body = agent.put(
        "/v1/agent/service/register", {"Name": "web", "Port": 1}, token="nope"
    )
    assert (status, body) == (403, "ACL not found")
    token = agent.ok(
        "PUT",
        "/v1/acl/token",
        {"Description": "web sidecar", "ServiceIdentities": [{"ServiceName": "web"}]},
    )
    secret = token["SecretID"]
    assert token["ServiceIdentities"] == [{"ServiceName": "web"}]
    # service:write on web and web-sidecar-proxy: register both through sidecar_service.
    agent.ok(
        "PUT",
        "/v1/agent/service/register",
        {"Name": "web", "Port": 80, "Connect": {"SidecarService": {}}},
        token=secret,
    )
    status, _, body = agent.put(
        "/v1/agent/service/register", {"Name": "db", "Port": 1}, token=secret
    )
    assert (status, body) == (403, "Permission denied")
    # Leaf for web only; authorize needs write on Target.
    assert agent.get("/v1/agent/connect/ca/leaf/web", token=secret)[0] == 200
    assert agent.get("/v1/agent/connect/ca/leaf/db", token=secret)[0] == 403
    td = agent.trust_domain()
    auth = {"Target": "web", "ClientCertURI": f"spiffe://{td}/ns/default/dc/dc1/svc/api"}
    result = agent.ok("POST", "/v1/agent/connect/authorize", auth, token=secret)
    assert result == {"Authorized": False, "Reason": "Default behavior configured by ACLs"}
    assert (
        agent.post("/v1/agent/connect/authorize", {**auth, "Target": "db"}, token=secret)[0] == 403
    )
    # Anonymous sees nothing; read on every service (discovery); roots need no token.
    assert agent.ok("GET", "/v1/agent/services", token="") == {}
    assert agent.get("/v1/health/connect/db", token=secret)[0] == 200
    assert agent.get("/v1/agent/connect/ca/roots", token="")[0] == 200
    # Management-only: intentions writes, queries, CA config.
    ixn = {"SourceName": "api", "DestinationName": "web", "Action": "allow"}
    assert agent.post("/v1/connect/intentions", ixn, token=secret)[0] == 403
    agent.ok("POST", "/v1/connect/intentions", ixn)
    assert agent.ok("POST", "/v1/agent/connect/authorize", auth, token=secret)["Authorized"] is True
    assert agent.get("/v1/connect/ca/configuration", token=secret)[0] == 403
    me = agent.ok("GET", "/v1/acl/token/self", token=secret)
    assert me["AccessorID"] == token["AccessorID"]
    agent.ok("DELETE", f"/v1/acl/token/{token['AccessorID']}")
    assert agent.get("/v1/agent/connect/ca/leaf/web", token=secret)[0] == 403
    # Tokens survive a restart.
    kept = agent.ok("PUT", "/v1/acl/token", {"ServiceIdentities": [{"ServiceName": "db"}]})
    agent.restart()
    assert agent.get("/v1/agent/connect/ca/leaf/db", token=kept["SecretID"])[0] == 200
