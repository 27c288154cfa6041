# SPDX-License-Identifier: MPL-2.0
"""Authorization from Consul intentions, decided locally or by the agent.

Local mode keeps `/v1/connect/intentions/match?by=destination&name=<svc>` current with a
blocking watch and decides each connection without a network call (as Consul's built-in
proxy does with its intentions cache), so a
changed intention applies to the next connection as soon as the watch returns, and decisions
keep working while Consul is briefly away (fail-static). The default for "no intention
matches" is learnt from the agent itself, by asking `/v1/agent/connect/authorize` about a
source no intention can name, so `default_intention_policy` and the ACL default policy are
both honoured without reading agent config we may have no right to read.

Agent mode (`-authz agent`) asks `/v1/agent/connect/authorize` for every connection, exactly
like the built-in proxy. Both fail closed on any error.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from meshkit.authz import Decision
from meshkit.consul.client import ConsulClient, ConsulError, Response
from meshkit.consul.watch import Mode, Policy, Watch
from meshkit.spiffe import ServiceID

log = logging.getLogger("meshkit.consul.intentions")


@dataclass(frozen=True, slots=True)
class Intention:
    source_ns: str
    source_name: str
    source_peer: str
    action: str  # "allow" | "deny"
    l7: bool  # has Permissions: an L4 proxy must deny
    precedence: int
    label: str  # for the decision reason (ID or "src => dst")

    def matches(self, peer: ServiceID) -> bool:
        if self.source_peer:
            return False  # cluster peering sources never match a local identity
        ns_ok = self.source_ns in ("*", "", peer.namespace)
        return ns_ok and self.source_name in ("*", peer.service)


def precedence_of(src_ns: str, src_name: str, dst_ns: str, dst_name: str) -> int:
    """Consul's precedence, for entries that arrive without one: 9 (source and destination
    exact) down to 1 (both wildcards); an exact destination outranks any source."""
    table = {
        (True, True, True, True): 9,
        (True, False, True, True): 8,
        (False, False, True, True): 7,
        (True, True, True, False): 6,
        (True, False, True, False): 5,
        (False, False, True, False): 4,
        (True, True, False, False): 3,
        (True, False, False, False): 2,
        (False, False, False, False): 1,
    }
    key = (src_ns != "*", src_name != "*", dst_ns != "*", dst_name != "*")
    return table.get(key, 0)


def parse_match(resp: Response, destination: str) -> tuple[Intention, ...]:
    """Decode a match response into evaluation order: precedence, then deny before allow."""
    body = resp.body
    if not isinstance(body, dict):
        raise ValueError("intentions match: expected an object keyed by destination")
    # Consul 1.7 answers `{"<name>": null}` when nothing matches (fixture e01): no
    # intentions, so the default policy decides. A missing key means the same.
    if destination in body:
        raw = body[destination]
    else:
        raw = next((v for k, v in body.items() if k.lower() == destination.lower()), None)
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise ValueError(
            f"intentions match: expected a list (or null) of intentions for {destination!r}, "
            f"got {type(raw).__name__}"
        )
    out: list[Intention] = []
    for item in raw:
        if not isinstance(item, dict):
            raise ValueError("intentions match: an entry is not an object")
        src_ns = str(item.get("SourceNS") or "default")
        src_name = str(item.get("SourceName") or "")
        dst_ns = str(item.get("DestinationNS") or "default")
        dst_name = str(item.get("DestinationName") or destination)
        action = str(item.get("Action") or "").lower()
        l7 = bool(item.get("Permissions"))
        if not l7 and action not in ("allow", "deny"):
            raise ValueError(f"intentions match: unknown Action {item.get('Action')!r}")
        prec = item.get("Precedence")
        out.append(
            Intention(
                source_ns=src_ns,
                source_name=src_name,
                source_peer=str(item.get("SourcePeer") or ""),
                action=action,
                l7=l7,
                precedence=(
                    int(prec)
                    if isinstance(prec, int | float) and prec
                    else precedence_of(src_ns, src_name, dst_ns, dst_name)
                ),
                label=str(item.get("ID") or f"{src_name} => {dst_name}"),
            )
        )
    # Stable sort keeps Consul's order among equals; deny first at equal precedence.
    out.sort(key=lambda i: (-i.precedence, 0 if i.action == "deny" or i.l7 else 1))
    return tuple(out)


def decide(intentions: Sequence[Intention], peer: ServiceID, default: Decision) -> Decision:
    for intention in intentions:
        if intention.matches(peer):
            if intention.l7:
                return Decision(False, f"Matched L7 intention: {intention.label}")
            return Decision(intention.action == "allow", f"Matched L4 intention: {intention.label}")
    return default


class IntentionsAuthorizer:
    """Local decisions from a watched intentions cache (the default `-authz` mode)."""

    def __init__(self, client: ConsulClient, destination: str, policy: Policy | None = None):
        self.client, self.destination = client, destination
        self.default = Decision(False, "default policy not known yet (fail closed)")
        self.watch: Watch[tuple[Intention, ...]] = Watch(
            client,
            f"intentions:{destination}",
            "/v1/connect/intentions/match",
            mode=Mode.INDEX,
            params=[("by", "destination"), ("name", destination)],
            decode=lambda r: parse_match(r, destination),
            on_update=self._on_update,
            policy=policy,
        )
        self._probe_source = f"meshkit-default-probe-{secrets.token_hex(6)}"
        self.trust_domain = "consul"  # set from the CA roots; only used to build the probe

    async def _on_update(self, intentions: tuple[Intention, ...]) -> None:
        log.info("intentions for %s: %d entries", self.destination, len(intentions))
        await self.refresh_default()

    async def refresh_default(self) -> None:
        """Learn the "no match" decision from the agent; keep the old one if that fails."""
        probe = ServiceID(self.trust_domain, "default", "dc1", self._probe_source)
        try:
            resp = await self.client.post(
                "/v1/agent/connect/authorize",
                {"Target": self.destination, "ClientCertURI": probe.uri, "ClientCertSerial": ""},
            )
        except ConsulError as exc:
            log.warning("could not learn the default intention policy: %s", exc)
            return
        body = resp.body if isinstance(resp.body, dict) else {}
        reason = str(body.get("Reason", ""))
        if "intention" in reason.lower() and "matched" in reason.lower():
            return  # a wildcard intention answered; the default never applies then
        allowed = body.get("Authorized") is True
        self.default = Decision(allowed, reason or "default policy")

    async def authorize(self, peer: ServiceID, serial: str) -> Decision:
        return self.decide_now(peer, serial)

    def decide_now(self, peer: ServiceID, serial: str) -> Decision:
        """Always answers from the cache, so the inbound path never waits on Consul."""
        if not self.watch.status.has_value or self.watch.value is None:
            return Decision(False, "intentions not loaded yet (fail closed)")
        return decide(self.watch.value, peer, self.default)


class AgentAuthorizer:
    """`-authz agent`: one `/v1/agent/connect/authorize` call per connection."""

    def __init__(self, client: ConsulClient, destination: str, timeout_s: float = 2.0) -> None:
        self.client, self.destination, self.timeout_s = client, destination, timeout_s

    def decide_now(self, peer: ServiceID, serial: str) -> None:
        return None  # every decision is the agent's, over HTTP

    async def authorize(self, peer: ServiceID, serial: str) -> Decision:
        try:
            resp = await self.client.post(
                "/v1/agent/connect/authorize",
                {"Target": self.destination, "ClientCertURI": peer.uri, "ClientCertSerial": serial},
                timeout=self.timeout_s,
            )
        except ConsulError as exc:
            return Decision(False, f"authorize call failed (fail closed): {exc}")
        return parse_authorize(resp.body)


def parse_authorize(body: Any) -> Decision:
    """`/v1/agent/connect/authorize`: only a boolean `Authorized` allows; anything else denies."""
    if not isinstance(body, dict) or not isinstance(body.get("Authorized"), bool):
        return Decision(False, "authorize: malformed response (fail closed)")
    return Decision(body["Authorized"], str(body.get("Reason") or ""))
