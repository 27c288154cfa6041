# SPDX-License-Identifier: MPL-2.0
"""Where an upstream listener sends a connection.

A resolver returns the candidates in the order to try them. Static mode lists them in the
config file; Consul mode keeps a watched copy of health/prepared-query results so that
`targets()` never waits on the network while an application connection is held open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from meshkit.spiffe import ServiceID

SERVICE = "service"
PREPARED_QUERY = "prepared_query"


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    expected: ServiceID
    kind: str = SERVICE


class Resolver(Protocol):
    async def targets(self) -> Sequence[Target]: ...

    def targets_now(self) -> Sequence[Target] | None:
        """The candidates if they are in memory already; None when `targets()` must wait."""
        ...


@dataclass(frozen=True)
class StaticResolver:
    """A fixed list, tried in order."""

    items: tuple[Target, ...]

    async def targets(self) -> Sequence[Target]:
        return self.items

    def targets_now(self) -> Sequence[Target]:
        return self.items
