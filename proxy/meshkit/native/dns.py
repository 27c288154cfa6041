# SPDX-License-Identifier: MPL-2.0
"""Discovery through Consul's DNS interface instead of the HTTP API (`Service(dns=...)`).

`<name>.connect.consul` SRV answers carry the Connect-capable endpoints (sidecar proxies and
native instances) with their ports; the A records of their targets come in the additional
section (or are asked for). The expected identity is the destination in our datacenter (or
the one named), since DNS does not say more. Prepared queries stay on the HTTP API: their
DNS answer does not name the service behind the query, which the identity check needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dns.asyncquery
import dns.exception
import dns.message
import dns.rdatatype

from meshkit.native.errors import NoHealthyInstance
from meshkit.resolver import Target
from meshkit.spiffe import ServiceID

if TYPE_CHECKING:
    from meshkit.native.destination import Destination

DNS_TIMEOUT_S = 2.0


async def dns_instances(
    server_port: tuple[str, int], local_dc: str, trust_domain: str, dest: Destination
) -> list[Target]:
    """The SRV answer for `<name>.connect.[dc.]consul.` at the agent's DNS interface, as targets
    that must present `dest`'s identity in `trust_domain`."""
    server, port = server_port
    dc = dest.datacenter or local_dc
    qname = f"{dest.name}.connect.{dest.datacenter + '.' if dest.datacenter else ''}consul."
    query = dns.message.make_query(qname, dns.rdatatype.SRV)
    try:
        answer = await dns.asyncquery.udp(query, server, port=port, timeout=DNS_TIMEOUT_S)
    except (dns.exception.DNSException, OSError) as exc:
        raise NoHealthyInstance(f"DNS {qname} SRV via {server}:{port}: {exc}") from None
    addresses: dict[str, list[str]] = {}
    for rrset in answer.additional:
        if rrset.rdtype == dns.rdatatype.A:
            addresses.setdefault(rrset.name.to_text(), []).extend(r.address for r in rrset)
    expected = ServiceID(trust_domain, "default", dc, dest.name)
    out: list[Target] = []
    for rrset in answer.answer:
        if rrset.rdtype != dns.rdatatype.SRV:
            continue
        for srv in rrset:
            for host in addresses.get(srv.target.to_text(), []):
                out.append(Target(host=host, port=srv.port, expected=expected))
    return out
