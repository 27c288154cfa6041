# SPDX-License-Identifier: MPL-2.0
"""`service-intentions` config entries and the legacy API are two views of one store."""

from __future__ import annotations

from tests.support.devagent import DevAgent


def test_service_intentions_entry_and_legacy_view_agree(dev_agent: DevAgent) -> None:
    agent = dev_agent
    entry = {
        "Kind": "service-intentions",
        "Name": "db",
        "Sources": [{"Name": "web", "Action": "allow"}, {"Name": "*", "Action": "deny"}],
    }
    assert agent.ok("PUT", "/v1/config", entry) is True
    legacy = agent.ok("GET", "/v1/connect/intentions")
    assert sorted((i["SourceName"], i["Action"], i["Precedence"]) for i in legacy) == [
        ("*", "deny", 8),
        ("web", "allow", 9),
    ]
    got = agent.ok("GET", "/v1/config/service-intentions/db")
    assert [(s["Name"], s["Action"]) for s in got["Sources"]] == [("web", "allow"), ("*", "deny")]
    td = agent.trust_domain()

    def allowed(src: str) -> bool:
        body = {"Target": "db", "ClientCertURI": f"spiffe://{td}/ns/default/dc/dc1/svc/{src}"}
        return bool(agent.ok("POST", "/v1/agent/connect/authorize", body)["Authorized"])

    assert allowed("web") and not allowed("api")
    # A legacy write shows up in the entry; replacing the entry drops sources not listed.
    agent.ok(
        "POST",
        "/v1/connect/intentions",
        {"SourceName": "api", "DestinationName": "db", "Action": "allow"},
    )
    names = [s["Name"] for s in agent.ok("GET", "/v1/config/service-intentions/db")["Sources"]]
    assert sorted(names) == ["*", "api", "web"]
    agent.ok(
        "PUT",
        "/v1/config",
        {
            "Kind": "service-intentions",
            "Name": "db",
            "Sources": [{"Name": "api", "Action": "deny"}],
        },
    )
    assert [(i["SourceName"], i["Action"]) for i in agent.ok("GET", "/v1/connect/intentions")] == [
        ("api", "deny")
    ]
    assert len(agent.ok("GET", "/v1/config/service-intentions")) == 1
    agent.ok("DELETE", "/v1/config/service-intentions/db")
    assert agent.ok("GET", "/v1/connect/intentions") == []
    assert agent.get("/v1/config/service-intentions/db")[0] == 404
    bad = agent.put(
        "/v1/config",
        {"Kind": "service-intentions", "Name": "db", "Sources": [{"Name": "x", "Action": "maybe"}]},
    )
    assert bad[0] == 400 and "Action" in bad[2]
    bad = agent.put("/v1/config", {"Kind": "service-intentions", "Name": "db", "Bogus": 1})
    assert bad[0] == 400 and 'unknown field "Bogus"' in bad[2]


def test_service_and_proxy_defaults_are_stored(dev_agent: DevAgent) -> None:
    agent = dev_agent
    agent.ok(
        "PUT",
        "/v1/config",
        {"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "tcp"}},
    )
    agent.ok("PUT", "/v1/config", {"Kind": "service-defaults", "Name": "db", "Protocol": "TCP"})
    assert agent.ok("GET", "/v1/config/service-defaults/db")["Protocol"] == "tcp"  # lowercased
    # Consul 1.7 renames any proxy-defaults entry to "global" (edges e16): accepted, and it
    # replaces the global entry.
    assert agent.ok("PUT", "/v1/config", {"Kind": "proxy-defaults", "Name": "x"}) is True
    assert agent.ok("GET", "/v1/config/proxy-defaults/global")["Config"] is None
    assert agent.get("/v1/config/proxy-defaults/x")[0] == 404
    # ingress-gateway came in Consul 1.8: an unknown kind for 1.7.
    assert agent.put("/v1/config", {"Kind": "ingress-gateway", "Name": "x"})[:3:2] == (
        400,
        "Bad request: Request decoding failed: invalid config entry kind: ingress-gateway",
    )


def test_check_and_set_on_config_entries(dev_agent: DevAgent) -> None:
    agent = dev_agent
    entry = {
        "Kind": "service-intentions",
        "Name": "db",
        "Sources": [{"Name": "web", "Action": "allow"}],
    }
    assert agent.ok("PUT", "/v1/config?cas=0", entry) is True
    assert agent.ok("PUT", "/v1/config?cas=0", entry) is False  # exists now
    index = agent.ok("GET", "/v1/config/service-intentions/db")["ModifyIndex"]
    changed = {**entry, "Sources": [{"Name": "web", "Action": "deny"}]}
    assert agent.ok("PUT", f"/v1/config?cas={index + 1000}", changed) is False
    assert agent.ok("GET", "/v1/config/service-intentions/db")["Sources"][0]["Action"] == "allow"
    assert agent.ok("PUT", f"/v1/config?cas={index}", changed) is True
    index = agent.ok("GET", "/v1/config/service-intentions/db")["ModifyIndex"]
    assert agent.ok("DELETE", f"/v1/config/service-intentions/db?cas={index - 1}") is False
    assert agent.ok("DELETE", f"/v1/config/service-intentions/db?cas={index}") is True
    assert agent.get("/v1/config/service-intentions/db")[0] == 404


def test_filter_expressions(dev_agent: DevAgent) -> None:
    agent = dev_agent
    agent.register(
        {
            "Name": "web",
            "ID": "web-1",
            "Port": 80,
            "Tags": ["v1"],
            "Connect": {"SidecarService": {}},
        }
    )
    agent.register({"Name": "db", "Port": 5432})
    found = agent.ok("GET", "/v1/agent/services?pretty&filter=Kind%20%3D%3D%20%22connect-proxy%22")
    assert list(found) == ["web-1-sidecar-proxy"]
    found = agent.ok(
        "GET", "/v1/agent/services?filter=" + "%22v1%22%20in%20Tags%20and%20Service%20%3D%3D%20web"
    )
    assert sorted(found) == ["web-1"]  # the sidecar is named web-sidecar-proxy
    status, _, body = agent.get("/v1/agent/services?filter=Kind%20~%20x")
    assert status == 400 and "Failed to create boolean expression evaluator" in body
