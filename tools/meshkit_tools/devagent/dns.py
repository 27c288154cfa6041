# SPDX-License-Identifier: MPL-2.0
"""Consul's DNS interface on the dev agent: `<svc>.service`, `<svc>.connect`, `<q>.query`.

Answers A and SRV as Consul 1.7 does for the names a mesh application uses: instances that are
not critical (passing and warning, Consul's default `only_passing = false`), shuffled, at most 3
records per UDP answer (`udp_answer_limit`), TTL 0, SRV targets `<node>.node.<dc>.consul.` (or
`<hex-ip>.addr.<dc>.consul.` when the service has its own address) with their A records in the
additional section, NXDOMAIN with the SOA when nothing matches, and the RFC 2782 spelling
`_<svc>._tcp.service.consul` too. `.connect` returns the Connect-capable endpoints of a service:
its sidecar proxies and its native instances. `.query` executes a prepared query (by name or
ID). Names outside `consul.` are refused with SERVFAIL, as Consul without recursors does. With
ACLs on, DNS runs with the anonymous token, which the dev agent's default-deny policy lets read
nothing.

The wire format is dnspython's (parsing and building messages); only the lookup is ours.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from meshkit_tools.devagent.catalog import CRITICAL, NotFound, Service

if TYPE_CHECKING:
    from meshkit_tools.devagent.server import Agent

log = logging.getLogger("meshkit_tools.devagent.dns")

DOMAIN = dns.name.from_text("consul.")
UDP_ANSWER_LIMIT = 3
UDP_MAX_SIZE = 512
TCP_MAX_MESSAGE = 65535
TCP_IDLE_TIMEOUT_S = 10.0
SOA_TEXT = "ns.consul. hostmaster.consul. 1 3600 600 86400 0"


@dataclass(frozen=True, slots=True)
class Endpoint:
    node: str
    address: str
    port: int
    service_address: str  # "" when the service uses the node's address


class Lookup:
    """Name → endpoints, from the dev agent's state."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    @property
    def dc(self) -> str:
        return self.agent.node.datacenter

    def _endpoints(self, services: Iterable[Service]) -> list[Endpoint]:
        state, node = self.agent.state, self.agent.node
        out = []
        for svc in services:
            if any(c.status == CRITICAL for c in state.entry_checks(svc)):
                continue
            out.append(Endpoint(node.name, svc.address or node.address, svc.port, svc.address))
        return out

    def resolve(self, labels: list[str]) -> list[Endpoint] | None:
        """Labels before `consul.` (the datacenter label removed); None means unknown name."""
        if self.agent.acl.enabled:
            return []  # anonymous token, default deny
        if len(labels) == 3 and labels[0].startswith("_") and labels[1] == "_tcp":
            labels = [labels[0][1:], "service"]  # RFC 2782: _svc._tcp.service.consul
        if len(labels) != 2:
            return None
        name, kind = labels
        if kind == "service":
            return self._endpoints(self.agent.state.by_name(name))
        if kind == "connect":
            return self._endpoints(self.agent.state.by_name(name, connect=True))
        if kind == "query":
            try:
                result = self.agent.queries.execute(name, connect=False, limit=0)
            except NotFound:
                return []
            ids = {n["Service"]["ID"] for n in result["Nodes"]}
            return self._endpoints(s for s in self.agent.state.services.values() if s.id in ids)
        return None

    def node_address(self, name: str) -> str | None:
        node = self.agent.node
        return node.address if name.lower() == node.name.lower() else None


def _target(ep: Endpoint, dc: str) -> str:
    if ep.service_address:
        try:
            packed = ipaddress.ip_address(ep.address).packed
        except ValueError:
            return f"{ep.node}.node.{dc}.consul."
        if len(packed) == 4:
            return f"{packed.hex()}.addr.{dc}.consul."
    return f"{ep.node}.node.{dc}.consul."


def answer(lookup: Lookup, wire: bytes, tcp: bool) -> bytes | None:
    """One DNS query → the response's wire form (None: unparsable, drop it)."""
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return None
    resp = dns.message.make_response(query)
    resp.flags |= dns.flags.AA
    resp.flags &= ~dns.flags.RA
    if not query.question:
        resp.set_rcode(dns.rcode.FORMERR)
        return resp.to_wire()
    question = query.question[0]
    qname, qtype = question.name, question.rdtype
    if not qname.is_subdomain(DOMAIN):
        resp.set_rcode(dns.rcode.SERVFAIL)
        return resp.to_wire()
    labels = [lab.decode().lower() for lab in qname.relativize(DOMAIN).labels]
    dc = lookup.dc
    if labels and labels[-1] == dc.lower():
        labels = labels[:-1]
    ttl = 0

    def soa() -> None:
        resp.authority.append(
            dns.rrset.from_text(DOMAIN, ttl, dns.rdataclass.IN, dns.rdatatype.SOA, SOA_TEXT)
        )

    # <node>.node.consul and <hex>.addr.consul, for SRV targets.
    if len(labels) == 2 and labels[1] in ("node", "addr"):
        if labels[1] == "node":
            address = lookup.node_address(labels[0])
        else:
            try:
                address = str(ipaddress.IPv4Address(bytes.fromhex(labels[0])))
            except ValueError:
                address = None
        if address is None:
            resp.set_rcode(dns.rcode.NXDOMAIN)
            soa()
        elif qtype in (dns.rdatatype.A, dns.rdatatype.ANY):
            resp.answer.append(
                dns.rrset.from_text(qname, ttl, dns.rdataclass.IN, dns.rdatatype.A, address)
            )
        else:
            soa()
        return _wire(resp, tcp)

    found = lookup.resolve(labels)
    if not found:
        resp.set_rcode(dns.rcode.NXDOMAIN)
        soa()
        return _wire(resp, tcp)
    found = list(found)
    random.shuffle(found)
    if not tcp:
        found = found[:UDP_ANSWER_LIMIT]
    if qtype in (dns.rdatatype.A, dns.rdatatype.ANY):
        for ep in found:
            if _is_v4(ep.address):
                _add(resp.answer, qname, dns.rdatatype.A, ep.address, ttl)
    elif qtype == dns.rdatatype.SRV:
        for ep in found:
            target = _target(ep, dc)
            _add(resp.answer, qname, dns.rdatatype.SRV, f"1 1 {ep.port} {target}", ttl)
            if _is_v4(ep.address):
                _add(resp.additional, dns.name.from_text(target), dns.rdatatype.A, ep.address, ttl)
    else:
        soa()  # the name exists, the type does not: NOERROR, no answer
    return _wire(resp, tcp)


def _is_v4(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 4
    except ValueError:
        return False


def _add(
    section: list[dns.rrset.RRset],
    name: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    text: str,
    ttl: int,
) -> None:
    for rrset in section:
        if rrset.name == name and rrset.rdtype == rdtype:
            rrset.add(dns.rdata.from_text(dns.rdataclass.IN, rdtype, text), ttl)
            return
    section.append(dns.rrset.from_text(name, ttl, dns.rdataclass.IN, rdtype, text))


def _wire(resp: dns.message.Message, tcp: bool) -> bytes:
    limit = TCP_MAX_MESSAGE if tcp else max(UDP_MAX_SIZE, resp.request_payload or 0)
    try:
        return resp.to_wire(max_size=limit)
    except dns.exception.TooBig:
        resp.answer.clear()
        resp.additional.clear()
        resp.flags |= dns.flags.TC
        return resp.to_wire()


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, lookup: Lookup) -> None:
        self.lookup = lookup
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            out = answer(self.lookup, data, tcp=False)
        except Exception:  # a bad query must never stop the server
            log.exception("DNS query failed")
            return
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)


class DNSServer:
    """UDP and TCP on one loopback port."""

    def __init__(self, agent: Agent, host: str, port: int) -> None:
        self.lookup = Lookup(agent)
        self.host, self.port = host, port
        self.udp: asyncio.DatagramTransport | None = None
        self.tcp: asyncio.Server | None = None

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        try:
            self.tcp = await asyncio.start_server(
                self._tcp, self.host, self.port, reuse_address=True
            )
            self.port = self.tcp.sockets[0].getsockname()[1]
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UDP(self.lookup), local_addr=(self.host, self.port)
            )
        except OSError as exc:
            self.close()
            raise OSError(f"-dns-port {self.port}: {exc.strerror or exc}") from None
        self.udp = transport  # uvloop's UDP transport does not subclass DatagramTransport
        return self.port

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE_TIMEOUT_S):
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    wire = await reader.readexactly(size)
                out = answer(self.lookup, wire, tcp=True)
                if out is None:
                    break
                writer.write(len(out).to_bytes(2, "big") + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        if self.udp is not None:
            self.udp.close()
        if self.tcp is not None:
            self.tcp.close()
