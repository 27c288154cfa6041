# SPDX-License-Identifier: MPL-2.0
"""Registration, intentions and discovery parsing on recorded Consul responses and on the
edge cases real registrations carry (Nomad's bind_* keys, float timeouts, L7 intentions)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from meshkit.authz import Decision
from meshkit.consul.client import Response
from meshkit.consul.discovery import decode_entries
from meshkit.consul.intentions import decide, parse_match, precedence_of
from meshkit.consul.registration import AgentConfigError, parse_registration, pick_sidecar
from meshkit.spiffe import ServiceID
from tests.support.consul_double import fixture

TD = "1aa78cb5-7ff4-9f1e-e2d1-b104afeec934.consul"


def resp(body: Any) -> Response:
    return Response(200, body, 1, None, True, None)


def test_sidecar_registration_from_consul() -> None:
    reg = parse_registration(fixture("05-agent-service-web-sidecar-proxy.json"), "x")
    assert reg.public is not None
    assert (reg.proxy_id, reg.service, reg.public.bind_host, reg.public.bind_port) == (
        "web-sidecar-proxy",
        "web",
        "127.0.0.1",
        21000,
    )
    assert (reg.public.local_host, reg.public.local_port) == ("127.0.0.1", 8080)
    assert [(u.key, u.bind_host, u.bind_port) for u in reg.upstreams] == [
        ("service:redis", "127.0.0.1", 1234),
        ("prepared_query:nearest-redis", "127.0.0.1", 1235),
    ]


def test_nomad_bind_keys_win_and_unknown_keys_are_ignored() -> None:
    body = copy.deepcopy(fixture("c41-nomad-consul-agent-services.json"))
    svc = next(v for v in body.values() if v.get("Kind") == "connect-proxy")
    svc["Proxy"]["Config"].update(
        {"protocol": "tcp", "envoy_stats_tags": ["x"], "local_connect_timeout_ms": 2500.0}
    )
    svc["Proxy"]["Upstreams"][0]["Config"] = {"connect_timeout_ms": "750", "limits": {}}
    reg = parse_registration(svc, svc["ID"])
    assert reg.public is not None
    assert (reg.public.bind_host, reg.public.bind_port) == (
        "0.0.0.0",
        svc["Proxy"]["Config"]["bind_port"],
    )
    assert reg.public.local_connect_timeout_ms == 2500.0
    assert reg.upstreams[0].connect_timeout_ms == 750.0


def test_registration_errors_name_the_field() -> None:
    svc = fixture("06-agent-service-web.json")
    with pytest.raises(AgentConfigError, match="not 'connect-proxy'"):
        parse_registration(svc, "web")
    bad = copy.deepcopy(fixture("05-agent-service-web-sidecar-proxy.json"))
    bad["Proxy"]["Config"] = {"bind_port": "eighty"}
    with pytest.raises(AgentConfigError, match=r"Proxy\.Config\.bind_port"):
        parse_registration(bad, "web-sidecar-proxy")
    bad = copy.deepcopy(fixture("05-agent-service-web-sidecar-proxy.json"))
    bad["Proxy"]["Upstreams"][0]["Config"] = {"connect_timeout_ms": "soon"}
    with pytest.raises(AgentConfigError, match=r"Upstreams\[0\]\.Config\.connect_timeout_ms"):
        parse_registration(bad, "web-sidecar-proxy")


def test_port_zero_means_no_public_listener() -> None:
    body = copy.deepcopy(fixture("05-agent-service-web-sidecar-proxy.json"))
    body["Port"] = 0
    assert parse_registration(body, "p").public is None


def test_sidecar_for_is_case_insensitive_with_consuls_errors() -> None:
    services = fixture("07-agent-services.json")
    assert pick_sidecar(services, "WEB") == "web-sidecar-proxy"
    with pytest.raises(AgentConfigError, match="No sidecar proxy registered for nope"):
        pick_sidecar(services, "nope")
    twice = copy.deepcopy(services)
    twice["web-sidecar-proxy-2"] = dict(twice["web-sidecar-proxy"], ID="web-sidecar-proxy-2")
    with pytest.raises(AgentConfigError, match="More than one sidecar proxy registered for web"):
        pick_sidecar(twice, "web")


def _peer(name: str) -> ServiceID:
    return ServiceID(TD, "default", "dc1", name)


def _intention(src: str, action: str, **extra: Any) -> dict[str, Any]:
    return {
        "SourceNS": "default",
        "SourceName": src,
        "DestinationNS": "default",
        "DestinationName": "redis",
        "Action": action,
        **extra,
    }


def test_intentions_follow_consuls_precedence_and_default() -> None:
    deny_default = Decision(False, "Default behavior configured by ACLs")
    recorded = parse_match(resp(fixture("16-intention-match.json")), "redis")
    assert decide(recorded, _peer("web"), deny_default).allowed
    assert not decide(recorded, _peer("api"), deny_default).allowed
    assert decide(recorded, _peer("api"), Decision(True, "default")).allowed

    # exact beats wildcard whatever the order they arrive in; deny wins a tie
    body = {
        "redis": [
            _intention("*", "deny"),
            _intention("web", "allow"),
            _intention("admin", "allow", Precedence=9),
            _intention("admin", "deny", Precedence=9),
        ]
    }
    found = parse_match(resp(body), "redis")
    assert decide(found, _peer("web"), deny_default).allowed
    assert not decide(found, _peer("other"), Decision(True, "x")).allowed
    assert not decide(found, _peer("admin"), deny_default).allowed
    # names are case-sensitive
    assert not decide(found, _peer("Web"), Decision(True, "x")).allowed
    assert precedence_of("default", "web", "default", "redis") == 9
    assert precedence_of("default", "*", "default", "redis") == 8
    assert precedence_of("default", "web", "default", "*") == 6


def test_l7_intention_denies_at_l4() -> None:
    body = {"redis": [_intention("web", "", Permissions=[{"Action": "allow"}])]}
    decision = decide(parse_match(resp(body), "redis"), _peer("web"), Decision(True, "d"))
    assert not decision.allowed and "L7" in decision.reason


def test_discovery_targets_from_health_and_query() -> None:
    targets = decode_entries(fixture("26-health-connect-redis-passing.json"), "service", "x", TD)
    assert [(t.host, t.port, t.expected.service, t.expected.datacenter) for t in targets] == [
        ("127.0.0.1", 21001, "redis", "dc1")
    ]
    query = fixture("29-query-execute-connect-after-proxies.json")
    q = decode_entries(query["Nodes"], "prepared_query", query["Datacenter"], TD)
    assert [(t.port, t.expected.service, t.kind) for t in q] == [(21001, "redis", "prepared_query")]
    # a plain (non-Connect) instance is no target; a Connect-native one is
    plain = fixture("27-health-service-redis.json")
    assert decode_entries(plain, "service", "dc1", TD) == ()
    native = copy.deepcopy(plain)
    native[0]["Service"]["Connect"] = {"Native": True}
    (t,) = decode_entries(native, "service", "dc1", TD)
    assert t.expected.service == "redis"
