# SPDX-License-Identifier: MPL-2.0
"""Flag parsing, value parsing and the static authorizer: fast, in-process, no sockets."""

from __future__ import annotations

import asyncio

import pytest

from meshkit.authz import Decision, StaticAuthorizer, decide, decide_now
from meshkit.config import parse_hostport, parse_ms
from meshkit.flags import FlagError, UpstreamFlag, parse
from meshkit.spiffe import ServiceID, service_id

WEB = service_id("td.consul", "dc1", "web")


def test_both_flag_spellings_and_value_forms() -> None:
    a = parse(["-service", "web", "-listen", "127.0.0.1:21000", "-service-addr=127.0.0.1:8080"])
    b = parse(["--service=web", "--listen", "127.0.0.1:21000", "--service-addr", "127.0.0.1:8080"])
    assert a == b
    assert a.listen == ("127.0.0.1", 21000)
    assert a.service_addr == ("127.0.0.1", 8080)
    assert not a.static


def test_upstream_flag_forms() -> None:
    cmd = parse(
        [
            "-service", "web",
            "-upstream", "db:9191",
            "-upstream", "db2.service:127.0.0.2:9192",
            "-upstream", "geo.query:9193",
            "-upstream", "v6:[::1]:9194",
        ]
    )  # fmt: skip
    assert cmd.upstreams == (
        UpstreamFlag("db", "service", "127.0.0.1", 9191),
        UpstreamFlag("db2", "service", "127.0.0.2", 9192),
        UpstreamFlag("geo", "prepared_query", "127.0.0.1", 9193),
        UpstreamFlag("v6", "service", "::1", 9194),
    )


def test_all_consul_flags_are_accepted() -> None:
    cmd = parse(
        [
            "-proxy-id", "web-proxy", "-log-level", "DEBUG", "-log-json",
            "-http-addr", "127.0.0.1:8500", "-token", "secret", "-token-file", "/t",
            "-ca-file", "/ca", "-ca-path", "/cas", "-client-cert", "/c", "-client-key", "/k",
            "-tls-server-name", "consul", "-datacenter", "dc2", "-stale",
            "-admin-bind", "127.0.0.1:19000", "-authz", "local", "-workers", "2",
        ],
        env={},
    )  # fmt: skip
    assert cmd.proxy_id == "web-proxy" and cmd.log_level == "debug" and cmd.log_json
    assert cmd.http.http_addr == "127.0.0.1:8500" and cmd.http.datacenter == "dc2"
    assert cmd.http.stale
    assert cmd.admin_bind == ("127.0.0.1", 19000) and cmd.authz == "local" and cmd.workers == 2
    assert "secret" not in repr(cmd)


def test_environment_defaults_and_flag_precedence() -> None:
    env = {"CONNECT_PROXY_ID": "from-env", "CONSUL_HTTP_TOKEN": "tok"}
    assert parse([], env=env).proxy_id == "from-env"
    assert parse(["-proxy-id", "flag"], env=env).proxy_id == "flag"
    # CONSUL_* variables stay out of the command line: Consul mode's settings layer them
    # under the flags with Consul's precedence (tests/consul_mode/test_settings.py)
    assert parse([], env=env).http.token is None


@pytest.mark.parametrize(
    "args,message",
    [
        (["-nope"], "flag provided but not defined: -nope"),
        (["-service", "x", "-log-json=maybe"], "invalid boolean"),
        (["-service", "x", "-workers", "0"], "not a positive whole number"),
        (["-service", "x", "-authz", "remote"], "not one of local, agent"),
        (["-service", "x", "stray"], "unexpected argument"),
        (["-service", "x", "-upstream", "db:0"], "must not be 0"),
        (["-config", "f.yaml", "-proxy-id", "p"], "cannot be combined"),
    ],
)
def test_flag_errors(args: list[str], message: str) -> None:
    with pytest.raises(FlagError, match=message):
        parse(args, env={})


@pytest.mark.parametrize(
    "value,expected", [(1500, 1500.0), (2.5, 2.5), ("2000", 2000.0), (" 7.5 ", 7.5)]
)
def test_timeouts_accept_int_float_and_numeric_string(value: object, expected: float) -> None:
    assert parse_ms(value) == expected


@pytest.mark.parametrize("value", [True, "fast", 0, -1, float("nan"), None, [1]])
def test_timeouts_refuse_the_rest(value: object) -> None:
    with pytest.raises(ValueError):
        parse_ms(value)


def test_hostport() -> None:
    assert parse_hostport("[::1]:80") == ("::1", 80)
    assert parse_hostport("9000", default_host="127.0.0.1") == ("127.0.0.1", 9000)
    for bad in ("noport", ":80", "h:99999", "[::1]80"):
        with pytest.raises(ValueError):
            parse_hostport(bad)


def _check(authz: StaticAuthorizer, name: str) -> bool:
    peer = ServiceID("td.consul", "default", "dc1", name)
    return asyncio.run(authz.authorize(peer, "01")).allowed


def test_static_authorizer_rules() -> None:
    allow = StaticAuthorizer.from_lists(["web", "api-*"], [])
    assert _check(allow, "web") and _check(allow, "WEB") and _check(allow, "api-v2")
    assert not _check(allow, "billing")
    deny_wins = StaticAuthorizer.from_lists(["*"], ["billing"])
    assert _check(deny_wins, "web") and not _check(deny_wins, "billing")
    only_deny = StaticAuthorizer.from_lists([], ["billing"])
    assert not _check(only_deny, "web")  # deny by default once a list is given
    open_deny = StaticAuthorizer.from_lists([], ["billing"], "allow")
    assert _check(open_deny, "web") and not _check(open_deny, "billing")
    assert _check(StaticAuthorizer(), "anyone")  # no policy configured at all


def test_authorizer_errors_deny() -> None:
    class Broken:
        async def authorize(self, peer: ServiceID, serial: str) -> Decision:
            raise RuntimeError("agent unreachable")

        def decide_now(self, peer: ServiceID, serial: str) -> Decision | None:
            return None

    decision = asyncio.run(decide(Broken(), WEB, "01"))
    assert not decision.allowed and "agent unreachable" in decision.reason
    assert decide_now(Broken(), WEB, "01") is None  # no answer in memory: the caller awaits


def test_synchronous_decisions_fail_closed_and_match_the_awaited_ones() -> None:
    class Raises:
        async def authorize(self, peer: ServiceID, serial: str) -> Decision:
            return Decision(True, "unused")

        def decide_now(self, peer: ServiceID, serial: str) -> Decision | None:
            raise KeyError("cache torn")

    class Garbage(Raises):
        def decide_now(self, peer: ServiceID, serial: str) -> Decision | None:
            return "yes"  # type: ignore[return-value]

    torn = decide_now(Raises(), WEB, "01")
    assert torn is not None and not torn.allowed and "cache torn" in torn.reason
    garbage = decide_now(Garbage(), WEB, "01")
    assert garbage is not None and not garbage.allowed
    rules = StaticAuthorizer.from_lists(["web"], ["billing"])
    for name in ("web", "billing", "other"):
        peer = ServiceID("td.consul", "default", "dc1", name)
        now = decide_now(rules, peer, "01")
        assert now == asyncio.run(rules.authorize(peer, "01"))
