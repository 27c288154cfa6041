# SPDX-License-Identifier: MPL-2.0
"""Who may open a connection to this service.

One small interface so the static allow/deny lists of static mode and Consul's intentions
(agent mode) plug into the same inbound path. The caller treats any exception as a denial:
an authorizer that cannot decide must never let a peer through.

`decide_now` is the fast path: an authorizer whose answer is already in memory (static lists,
the watched intentions cache) gives it synchronously, so the inbound path needs no task or
coroutine for the decision; one that must ask over the network returns None and is awaited.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from meshkit.spiffe import ServiceID


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str


class Authorizer(Protocol):
    async def authorize(self, peer: ServiceID, serial: str) -> Decision: ...

    def decide_now(self, peer: ServiceID, serial: str) -> Decision | None: ...


def decide_now(authorizer: Authorizer, peer: ServiceID, serial: str) -> Decision | None:
    """The synchronous decision if the authorizer has one, failing closed like `decide`."""
    try:
        decision = authorizer.decide_now(peer, serial)
    except Exception as exc:  # fail closed, whatever went wrong
        return Decision(False, f"authorizer error: {type(exc).__name__}: {exc}")
    if decision is None or isinstance(decision, Decision):
        return decision
    return Decision(False, "authorizer returned no decision")


async def decide(authorizer: Authorizer, peer: ServiceID, serial: str) -> Decision:
    """Run an authorizer and fail closed on any error it raises."""
    try:
        decision = await authorizer.authorize(peer, serial)
    except Exception as exc:  # fail closed, whatever went wrong
        return Decision(False, f"authorizer error: {type(exc).__name__}: {exc}")
    if not isinstance(decision, Decision):
        return Decision(False, "authorizer returned no decision")
    return decision


@dataclass(frozen=True)
class StaticAuthorizer:
    """Allow and deny lists of source service names; `*` and `?` are wildcards.

    Deny wins over allow. A peer matching neither list gets `default`, which is deny whenever
    either list is given and allow only when both are empty (no policy configured at all).
    """

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    default_allow: bool | None = None

    @classmethod
    def from_lists(
        cls, allow: Sequence[str], deny: Sequence[str], default: str | None = None
    ) -> StaticAuthorizer:
        default_allow = None if default is None else default == "allow"
        return cls(tuple(p.lower() for p in allow), tuple(p.lower() for p in deny), default_allow)

    def check(self, service: str) -> Decision:
        name = service.lower()
        for pattern in self.deny:
            if fnmatch.fnmatchcase(name, pattern):
                return Decision(False, f"source {service!r} matches deny {pattern!r}")
        for pattern in self.allow:
            if fnmatch.fnmatchcase(name, pattern):
                return Decision(True, f"source {service!r} matches allow {pattern!r}")
        default = self.default_allow
        if default is None:
            default = not self.allow and not self.deny
        if default:
            return Decision(True, "default allow")
        return Decision(False, f"source {service!r} matches no allow rule (default deny)")

    async def authorize(self, peer: ServiceID, serial: str) -> Decision:
        return self.check(peer.service)

    def decide_now(self, peer: ServiceID, serial: str) -> Decision:
        return self.check(peer.service)
