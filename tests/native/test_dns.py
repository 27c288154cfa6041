# SPDX-License-Identifier: MPL-2.0
"""The dev agent's DNS interface (`-dns-port`), queried with dnspython over UDP and TCP, and
`meshkit.native` resolving through it."""

from __future__ import annotations

from collections.abc import Iterator

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.support.devagent import DevAgent
from tests.support.native import Recorder, register_native, roundtrip, run, service
from tests.support.ports import free_port


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevAgent]:
    port = free_port()
    with DevAgent(
        tmp_path_factory.mktemp("native-dns"), extra_args=["-dns-port", str(port)]
    ) as dev:
        dev.dns_port = port  # type: ignore[attr-defined]
        yield dev


def ask(agent: DevAgent, name: str, rdtype: str, tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    port = agent.dns_port  # type: ignore[attr-defined]
    if tcp:
        return dns.query.tcp(query, "127.0.0.1", port=port, timeout=3)
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=3)


def records(msg: dns.message.Message, section: str = "answer") -> list[str]:
    return sorted(r.to_text() for rrset in getattr(msg, section) for r in rrset)


@pytest.fixture(scope="module")
def catalog(agent: DevAgent) -> dict[str, int]:
    ports = {"web-a": free_port(), "web-b": free_port(), "web-bad": free_port()}
    agent.register({"Name": "web", "ID": "web-a", "Port": ports["web-a"]})
    agent.register({"Name": "web", "ID": "web-b", "Port": ports["web-b"], "Address": "127.0.0.2"})
    agent.register(
        {
            "Name": "web",
            "ID": "web-bad",
            "Port": ports["web-bad"],
            "Check": {"TTL": "60s", "Status": "critical"},
        }
    )
    ports["api"], ports["api-proxy"] = free_port(), free_port()
    agent.register(
        {
            "Name": "api",
            "Port": ports["api"],
            "Connect": {"SidecarService": {"Port": ports["api-proxy"]}},
        }
    )
    ports["api2-proxy"] = free_port()
    agent.register(  # a proxy without checks: passing, as a running sidecar would be
        {
            "Name": "api2-proxy",
            "Kind": "connect-proxy",
            "Port": ports["api2-proxy"],
            "Proxy": {"DestinationServiceName": "api2", "LocalServicePort": 9},
        }
    )
    ports["nat"] = free_port()
    register_native(agent, "nat", ports["nat"])
    agent.ok("POST", "/v1/query", {"Name": "webq", "Service": {"Service": "web"}})
    for i in range(5):
        agent.register(
            {"Name": "many", "ID": f"many-{i}", "Port": 7000 + i, "Address": f"127.0.1.{i}"}
        )
    return ports


def test_service_a_and_srv_skip_critical_instances(
    agent: DevAgent, catalog: dict[str, int]
) -> None:
    a = ask(agent, "web.service.consul", "A")
    assert a.rcode() == dns.rcode.NOERROR
    assert records(a) == ["127.0.0.1", "127.0.0.2"]
    srv = ask(agent, "web.service.dc1.consul", "SRV")
    ports = sorted(int(r.split()[2]) for r in records(srv))
    assert ports == sorted([catalog["web-a"], catalog["web-b"]])
    targets = {r.split()[3] for r in records(srv)}
    assert "dev-node.node.dc1.consul." in targets and "7f000002.addr.dc1.consul." in targets
    assert records(srv, "additional") == ["127.0.0.1", "127.0.0.2"]
    rfc = ask(agent, "_web._tcp.service.consul", "SRV")
    assert sorted(int(r.split()[2]) for r in records(rfc)) == ports


def test_connect_names_the_proxies_and_native_instances(
    agent: DevAgent, catalog: dict[str, int]
) -> None:
    api2 = ask(agent, "api2.connect.consul", "SRV")
    assert [int(r.split()[2]) for r in records(api2)] == [catalog["api2-proxy"]]
    # api's sidecar has no proxy running: its listening check is critical, so it is left out.
    assert ask(agent, "api.connect.consul", "SRV").rcode() == dns.rcode.NXDOMAIN
    nat = ask(agent, "nat.connect.consul", "SRV")
    assert [int(r.split()[2]) for r in records(nat)] == [catalog["nat"]]
    web = ask(agent, "web.connect.consul", "A")  # not Connect-capable
    assert web.rcode() == dns.rcode.NXDOMAIN


def test_query_and_unknown_names(agent: DevAgent, catalog: dict[str, int]) -> None:
    q = ask(agent, "webq.query.consul", "SRV")
    assert sorted(int(r.split()[2]) for r in records(q)) == sorted(
        [catalog["web-a"], catalog["web-b"]]
    )
    gone = ask(agent, "nothing.service.consul", "A")
    assert gone.rcode() == dns.rcode.NXDOMAIN
    assert gone.authority and gone.authority[0].rdtype == dns.rdatatype.SOA
    assert ask(agent, "noquery.query.consul", "A").rcode() == dns.rcode.NXDOMAIN
    assert ask(agent, "example.com", "A").rcode() == dns.rcode.SERVFAIL
    node = ask(agent, "dev-node.node.consul", "A")
    assert records(node) == ["127.0.0.1"]


def test_udp_answers_are_limited_to_three_tcp_are_not(
    agent: DevAgent, catalog: dict[str, int]
) -> None:
    assert len(records(ask(agent, "many.service.consul", "A"))) == 3
    assert len(records(ask(agent, "many.service.consul", "A", tcp=True))) == 5


def test_native_service_resolves_through_dns(agent: DevAgent, catalog: dict[str, int]) -> None:
    port = free_port()
    register_native(agent, "dnsdb", port)
    rec = Recorder("dnsdb")
    dns_port = agent.dns_port  # type: ignore[attr-defined]

    async def scenario() -> bytes:
        async with (  # noqa: SIM117 (the server needs the started service)
            service("dnsdb", agent.address) as db,
            service("dnsweb", agent.address, dns=("127.0.0.1", dns_port)) as web,
        ):
            async with await db.start_server(rec, "127.0.0.1", port):
                found = await web.instances("dnsdb")
                assert [(t.host, t.port) for t in found] == [("127.0.0.1", port)]
                return await roundtrip(*await web.connect("dnsdb"), b"via-dns")

    assert run(scenario) == b"dnsdb:via-dns"
    assert rec.peers == ["dnsweb"]
