# SPDX-License-Identifier: MPL-2.0
"""CA roots and the leaf certificate from the agent, fed into the proxy's TLS store.

Both are index-blocking watches on the agent's cached endpoints. Every root is trusted, not only the
active one, which is what makes CA rotation seamless. The leaf's `ValidBefore` is checked
here as well (consul#9862): while Consul is away the last leaf keeps being used only until it
expires, then `on_expired` is called so the caller stops serving rather than present an
expired certificate.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from meshkit.certstore import CertStore, MaterialError, TLSMaterial
from meshkit.consul.client import ConsulClient, Response
from meshkit.consul.watch import Mode, Policy, Watch

log = logging.getLogger("meshkit.consul.certs")

_FRACTION = re.compile(r"\.(\d+)")


@dataclass(frozen=True, slots=True)
class Roots:
    trust_domain: str
    active_id: str
    pems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Leaf:
    serial: str
    cert_pem: str
    key_pem: str
    valid_before: dt.datetime

    def __repr__(self) -> str:  # the key never reaches a log line
        return f"Leaf(serial={self.serial!r}, valid_before={self.valid_before.isoformat()})"


def parse_time(value: object, field: str) -> dt.datetime:
    """RFC 3339 as Go prints it (possibly with nanoseconds, which Python cannot take)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"leaf: {field} missing")
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6], value.replace("Z", "+00:00"), count=1)
    parsed = dt.datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def parse_roots(resp: Response) -> Roots:
    body = resp.body
    if not isinstance(body, dict):
        raise ValueError("CA roots: expected an object")
    roots = body.get("Roots") or []
    if not isinstance(roots, list):
        raise ValueError("CA roots: Roots is not a list")
    pems = tuple(r["RootCert"] for r in roots if isinstance(r, dict) and r.get("RootCert"))
    if not pems:
        raise ValueError("CA roots: no RootCert in the response")
    return Roots(str(body.get("TrustDomain") or ""), str(body.get("ActiveRootID") or ""), pems)


def parse_leaf(resp: Response) -> Leaf:
    body = resp.body
    if not isinstance(body, dict):
        raise ValueError("leaf: expected an object")
    cert, key = body.get("CertPEM"), body.get("PrivateKeyPEM")
    if not isinstance(cert, str) or not isinstance(key, str) or not cert or not key:
        raise ValueError("leaf: CertPEM or PrivateKeyPEM missing")
    return Leaf(
        serial=str(body.get("SerialNumber") or ""),
        cert_pem=cert,
        key_pem=key,
        valid_before=parse_time(body.get("ValidBefore"), "ValidBefore"),
    )


class ConsulCerts:
    """Roots + leaf watches → `CertStore.update`, plus the expiry guard."""

    def __init__(
        self,
        client: ConsulClient,
        service: str,
        store: CertStore,
        *,
        on_expired: Callable[[], Awaitable[None]],
        on_renewed: Callable[[], Awaitable[None]],
        policy: Policy | None = None,
    ) -> None:
        self.store, self.service = store, service
        self.on_expired, self.on_renewed = on_expired, on_renewed
        self.expired = False
        self.roots: Watch[Roots] = Watch(
            client,
            "ca-roots",
            "/v1/agent/connect/ca/roots",
            mode=Mode.INDEX,
            decode=parse_roots,
            on_update=self._on_roots,
            policy=policy,
        )
        self.leaf: Watch[Leaf] = Watch(
            client,
            f"leaf:{service}",
            f"/v1/agent/connect/ca/leaf/{service}",
            mode=Mode.INDEX,
            decode=parse_leaf,
            on_update=self._on_leaf,
            policy=policy,
        )
        self._expiry_task: asyncio.Task[None] | None = None

    @property
    def trust_domain(self) -> str:
        return self.roots.value.trust_domain if self.roots.value else "consul"

    async def _on_roots(self, roots: Roots) -> None:
        log.info("CA roots: %d root(s), active %s", len(roots.pems), roots.active_id)
        await self._push()

    async def _on_leaf(self, leaf: Leaf) -> None:
        log.info(
            "leaf for %s: serial %s, valid until %s",
            self.service,
            leaf.serial,
            leaf.valid_before.isoformat(),
        )
        await self._push()

    async def _push(self) -> None:
        roots, leaf = self.roots.value, self.leaf.value
        if roots is None or leaf is None:
            return
        if leaf.valid_before <= dt.datetime.now(dt.UTC):
            log.error("leaf for %s from Consul is already expired; not using it", self.service)
            return
        try:
            # Consul's own trust domain, from the roots response, is the only one accepted.
            domains = (roots.trust_domain,) if roots.trust_domain else ()
            material = TLSMaterial(leaf.cert_pem, leaf.key_pem, roots.pems, domains)
            self.store.update(material)
        except MaterialError as exc:
            log.error("TLS material from Consul not loaded, keeping the previous one: %s", exc)
            return
        self._arm_expiry(leaf.valid_before)
        if self.expired:
            self.expired = False
            await self.on_renewed()

    def _arm_expiry(self, valid_before: dt.datetime) -> None:
        if self._expiry_task is not None:
            self._expiry_task.cancel()
        delay = (valid_before - dt.datetime.now(dt.UTC)).total_seconds()
        self._expiry_task = asyncio.get_running_loop().create_task(self._expire_after(delay))

    async def _expire_after(self, delay: float) -> None:
        # Sleep in bounded steps so a wall-clock jump cannot stretch the deadline.
        while delay > 0:
            await asyncio.sleep(min(delay, 30.0))
            leaf = self.leaf.value
            if leaf is None:
                return
            delay = (leaf.valid_before - dt.datetime.now(dt.UTC)).total_seconds()
        log.error("leaf for %s expired and Consul has not renewed it; stop serving", self.service)
        self.expired = True
        await self.on_expired()

    def stop(self) -> None:
        if self._expiry_task is not None:
            self._expiry_task.cancel()
            self._expiry_task = None
