# SPDX-License-Identifier: MPL-2.0
"""`Service`: one application's place in the mesh, without a sidecar.

Everything Consul-facing is the proxy's own Consul-mode code, used as a library: the
settings and token precedence (`consul.settings`), the HTTP client (`consul.client`), the
index-blocking leaf and roots watches with their expiry guard (`consul.certs`), the intentions
cache or the agent's authorize call (`consul.intentions`), discovery with its fail-static
cache (`consul.discovery`), and the TLS contexts and identity parsing (`tls`, `spiffe`). So a
native application and a meshkit-proxy decide the same way, from the same code.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from meshkit import authz, tls
from meshkit.certstore import CertStore
from meshkit.consul.certs import ConsulCerts
from meshkit.consul.client import ConsulClient, ConsulError
from meshkit.consul.discovery import ConsulResolver
from meshkit.consul.errors import explain, startup_call
from meshkit.consul.intentions import AgentAuthorizer, IntentionsAuthorizer
from meshkit.consul.settings import Settings, resolve
from meshkit.consul.watch import Policy, Watch, WatchGroup
from meshkit.flags import HTTPFlags
from meshkit.native.destination import Destination, Target, destination_of
from meshkit.native.errors import Denied, DialFailed, IdentityMismatch, NoHealthyInstance, NotReady
from meshkit.resolver import SERVICE
from meshkit.resolver import Target as Instance
from meshkit.spiffe import ServiceID, SpiffeError, parse_service_uri

log = logging.getLogger("meshkit.native")

DEFAULT_START_TIMEOUT_S = 30.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_HANDSHAKE_TIMEOUT_S = 10.0
# Dynamic upstreams: each distinct destination keeps one discovery watch; the least recently
# used is stopped beyond this many, so a caller naming many services cannot grow us unbounded.
MAX_DESTINATIONS = 64
AUTHZ_MODES = ("local", "agent")

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
ProtocolFactory = Callable[[], asyncio.BaseProtocol]


class Service:
    """A Connect-native service: its leaf, the roots, authorization and discovery.

        async with Service("web") as svc:            # CONSUL_HTTP_* as for the proxy
            server = await svc.start_server(handle, "0.0.0.0", 8443)
            reader, writer = await svc.connect("db")

    `consul` takes the proxy's `HTTPFlags` (flags over the environment, the same precedence)
    or resolved `Settings`; `authz` is `local` (a watched intentions cache, the default) or
    `agent` (`/v1/agent/connect/authorize` per connection).
    """

    def __init__(
        self,
        name: str,
        *,
        consul: HTTPFlags | Settings | None = None,
        env: Mapping[str, str] | None = None,
        authz: str = "local",
        dns: tuple[str, int] | None = None,
        policy: Policy | None = None,
        handshake_timeout_s: float = DEFAULT_HANDSHAKE_TIMEOUT_S,
    ) -> None:
        if not name or "/" in name:
            raise ValueError(f"Service({name!r}): a service name is required")
        if authz not in AUTHZ_MODES:
            raise ValueError(f"authz={authz!r}: use 'local' or 'agent'")
        self.name = name
        self.settings = consul if isinstance(consul, Settings) else resolve(consul, env)
        self.policy = policy or Policy()
        self.handshake_timeout_s = handshake_timeout_s
        self.client = ConsulClient(self.settings)
        self.store = CertStore("stdlib")
        self.certs = ConsulCerts(
            self.client,
            name,
            self.store,
            on_expired=self._leaf_expired,
            on_renewed=self._leaf_renewed,
            policy=self.policy,
        )
        self.group = WatchGroup()
        self.group.add(self.certs.roots)
        self.group.add(self.certs.leaf)
        self.intentions: IntentionsAuthorizer | None = None
        self.authorizer: IntentionsAuthorizer | AgentAuthorizer
        if authz == "agent":
            self.authorizer = AgentAuthorizer(self.client, name)
        else:
            self.intentions = IntentionsAuthorizer(self.client, name, self.policy)
            self.authorizer = self.intentions
            self.group.add(self.intentions.watch)
        self.dns = dns
        self.local_dc = "dc1"
        self.expired = False
        self._resolvers: collections.OrderedDict[tuple[str, str, str], ConsulResolver] = (
            collections.OrderedDict()
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._evictions: list[asyncio.Future[None]] = []
        self._started = False
        self._start_lock = asyncio.Lock()
        self._server_ctx: ssl.SSLContext | None = None

    # -- lifecycle ----------------------------------------------------------------------
    async def __aenter__(self) -> Service:
        await self.ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def ready(self, timeout: float = DEFAULT_START_TIMEOUT_S) -> None:
        """Fetch the leaf, the roots and the authorization state once, then keep them current.

        Idempotent. Raises NotReady naming the failing request and the fix (agent address,
        ACL token and the right it needs) when that cannot be done within `timeout`.
        """
        async with self._start_lock:
            if not self._started:
                try:
                    async with asyncio.timeout(timeout):
                        await self._start(time.monotonic() + timeout)
                except TimeoutError:
                    await self.client.close()
                    raise NotReady(
                        f"{self.name}: Consul at {self.settings.describe()} did not answer within "
                        f"{timeout}s; check CONSUL_HTTP_ADDR and that the agent is up"
                    ) from None
                self._started = True
        if not self.is_ready:
            raise NotReady(f"{self.name}: no valid leaf certificate (expired, not renewed)")

    @property
    def is_ready(self) -> bool:
        """A usable leaf and roots, and (local authz) the intentions loaded."""
        loaded = self.store.loaded and not self.expired
        if self.intentions is not None:
            return loaded and self.intentions.watch.status.has_value
        return loaded

    async def _start(self, deadline: float) -> None:
        steps: list[tuple[str, Watch[Any]]] = [
            ("fetching the CA roots", self.certs.roots),
            (f"fetching the leaf certificate for {self.name!r}", self.certs.leaf),
        ]
        if self.intentions is not None:
            steps.append((f"reading the intentions for {self.name!r}", self.intentions.watch))
        for what, watch in steps:
            try:
                await startup_call(what, lambda w=watch: w.fetch(False), deadline)  # type: ignore[misc]
            except (ConsulError, ValueError) as exc:
                await self.client.close()
                msg = (
                    explain(exc, what, self.settings, self.name)
                    if isinstance(exc, ConsulError)
                    else f"{what}: {exc}"
                )
                raise NotReady(msg) from None
            if watch is self.certs.roots and self.intentions is not None:
                self.intentions.trust_domain = self.certs.trust_domain
        if not self.store.loaded:
            await self.client.close()
            raise NotReady(f"the leaf certificate for {self.name!r} from Consul is unusable")
        with contextlib.suppress(SpiffeError):
            self.local_dc = parse_service_uri(self.store.leaf_uri).datacenter
        if self.intentions is not None:
            await self.intentions.refresh_default()
        for watch in self.group.watches:
            self._tasks.append(asyncio.ensure_future(watch.run()))
        log.info("%s: native mesh service ready (%s)", self.name, self.store.leaf_uri)

    async def close(self) -> None:
        """Stop every watch and the HTTP session. Open connections are the caller's."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await asyncio.gather(*self._evictions, return_exceptions=True)
        self._evictions.clear()
        for resolver in self._resolvers.values():
            await resolver.stop()
        self._resolvers.clear()
        self.certs.stop()
        await self.client.close()
        self._started = False

    async def _leaf_expired(self) -> None:
        # Never present an expired leaf: new handshakes on both sides fail until renewal.
        self.expired = True

    async def _leaf_renewed(self) -> None:
        self.expired = False

    # -- TLS ----------------------------------------------------------------------------
    @property
    def trust_domain(self) -> str:
        return self.certs.trust_domain

    @property
    def identity(self) -> ServiceID:
        """Our own SPIFFE identity, from the leaf."""
        return parse_service_uri(self.store.leaf_uri)

    def _current(self, server: bool) -> ssl.SSLContext:
        side = self.store.server if server else self.store.client
        if self.expired or not isinstance(side, tls.StdlibSide):
            raise NotReady(f"{self.name}: no valid leaf certificate; call ready() first")
        return side.ctx

    def server_ssl_context(self) -> ssl.SSLContext:
        """A server context that always presents the current leaf and trusts the current roots.

        Pass it to `asyncio.start_server(ssl=...)`, `loop.create_server` or a web stack once;
        each handshake switches to the newest material (an SNI callback runs for every
        ClientHello), so rotation needs no restart and open connections keep their session.
        A client certificate is required and verified against every root; the identity and
        intentions are checked by `guard`/`protocol_guard` before the application runs.
        """
        if self._server_ctx is None:
            base = tls.server_context(*self._material())
            base.sni_callback = self._pick_server_context
            self._server_ctx = base
        return self._server_ctx

    def client_ssl_context(self) -> ssl.SSLContext:
        """The current client context (leaf + roots); identity is checked by `connect`."""
        return self._current(server=False)

    def _material(self) -> tuple[str, str, tuple[str, ...]]:
        material = self.store.material
        if material is None or self.expired:
            raise NotReady(f"{self.name}: no valid leaf certificate; call ready() first")
        return material.chain_pem, material.key_pem, material.roots_pem

    def _pick_server_context(
        self, sslobj: ssl.SSLObject | ssl.SSLSocket, _server_name: str | None, _base: ssl.SSLContext
    ) -> int | None:
        try:
            sslobj.context = self._current(server=True)
        except NotReady:
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE  # expired: refuse, never serve stale
        return None

    # -- serving: identity, trust domain, intentions before the app sees a byte ----------
    async def check_peer(self, ssl_object: Any) -> tls.PeerIdentity:
        """The verified peer of a finished handshake, if it may talk to us; else raise Denied.

        Fails closed: no certificate, no Consul identity, a foreign trust domain, an intention
        that denies, an authorizer error or intentions not loaded yet all raise Denied.
        """
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        try:
            peer = tls.identity_of(der)
        except tls.IdentityError as exc:
            raise Denied(f"peer refused: {exc}") from None
        if peer.service.trust_domain.lower() != self.trust_domain.lower():
            raise Denied(
                f"peer {peer.service.uri} refused: trust domain {peer.service.trust_domain!r} "
                f"is not ours ({self.trust_domain!r})"
            )
        decision = authz.decide_now(self.authorizer, peer.service, peer.serial)
        if decision is None:
            decision = await authz.decide(self.authorizer, peer.service, peer.serial)
        if not decision.allowed:
            raise Denied(f"{peer.service.service} -> {self.name} denied: {decision.reason}")
        return peer

    def guard(self, handler: Handler) -> Handler:
        """Wrap an `asyncio.start_server` callback: refused peers are closed unseen.

        The handler only runs for an authorized peer; `peer_of(writer)` gives its identity.
        """

        async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await self.check_peer(writer.get_extra_info("ssl_object"))
            except Denied as exc:
                log.info("%s", exc)
                writer.transport.abort()
                return
            await handler(reader, writer)

        return guarded

    def protocol_guard(self, factory: ProtocolFactory) -> ProtocolFactory:
        """Wrap a `loop.create_server` protocol factory (aiohttp, uvicorn, ...) the same way."""
        from meshkit.native.guard import GuardedProtocol

        return lambda: GuardedProtocol(self.check_peer, factory)

    async def start_server(
        self, handler: Handler, host: str | None, port: int, **kwargs: Any
    ) -> asyncio.Server:
        """`asyncio.start_server` with the mesh context and the guard."""
        await self.ready()
        kwargs.setdefault("ssl_handshake_timeout", self.handshake_timeout_s)
        return await asyncio.start_server(
            self.guard(handler), host, port, ssl=self.server_ssl_context(), **kwargs
        )

    # -- dialling -------------------------------------------------------------------------
    def _resolver(self, dest: Destination) -> ConsulResolver:
        found = self._resolvers.get(dest.key)
        if found is not None:
            self._resolvers.move_to_end(dest.key)
            return found
        resolver = ConsulResolver(
            self.client,
            dest.kind,
            dest.name,
            dest.datacenter,
            local_dc=lambda: self.local_dc,
            trust_domain=lambda: self.trust_domain,
            policy=self.policy,
        )
        self._resolvers[dest.key] = resolver
        resolver.start()
        while len(self._resolvers) > MAX_DESTINATIONS:
            _, old = self._resolvers.popitem(last=False)
            self._evictions.append(asyncio.ensure_future(old.stop()))
        return resolver

    async def instances(self, target: Target) -> Sequence[Instance]:
        """Healthy Connect-capable instances (cached, watched, rotated), DNS when configured."""
        dest = destination_of(target)
        if self.dns is not None and dest.kind == SERVICE:
            from meshkit.native.dns import dns_instances

            return await dns_instances(self.dns, self.local_dc, self.trust_domain, dest)
        return await self._resolver(dest).targets()

    async def connect(
        self,
        target: Target,
        *,
        timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        check_intentions: bool = False,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """An mTLS stream to a healthy instance of `target`, its identity verified.

        Instances are tried in turn until one works or `timeout` is spent. Raises
        NoHealthyInstance, IdentityMismatch (every instance presented a wrong identity) or
        DialFailed. A destination whose intentions deny us closes the stream at the first
        read (the server cannot tell us why); `check_intentions=True` asks Consul first
        (`check`, one request, needs intentions:read) and raises Denied instead.
        """
        if check_intentions:
            decision = await self.check(target)
            if not decision.allowed:
                raise Denied(decision.reason)
        loop = asyncio.get_running_loop()
        made: dict[int, asyncio.StreamReader] = {}  # strong refs: the protocol holds a weakref

        def factory() -> asyncio.StreamReaderProtocol:
            reader = asyncio.StreamReader(limit=2**16, loop=loop)
            protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
            made[id(protocol)] = reader
            return protocol

        transport, protocol = await self.dial(target, factory, timeout=timeout)
        assert isinstance(protocol, asyncio.StreamReaderProtocol)
        reader = made[id(protocol)]
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        return reader, writer

    async def dial(
        self,
        target: Target,
        factory: Callable[[], asyncio.BaseProtocol],
        *,
        timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        """The dial loop under `connect` and the HTTP client: try instances within a deadline."""
        await self.ready()
        dest = destination_of(target)
        deadline = time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        try:
            found = await asyncio.wait_for(self.instances(dest), timeout)
        except TimeoutError:
            raise NoHealthyInstance(f"{dest}: discovery did not answer within {timeout}s") from None
        if not found:
            raise NoHealthyInstance(
                f"{dest}: no healthy Connect-capable instance (is it registered with a "
                "sidecar or Connect native, and passing its checks?)"
            )
        problems: list[str] = []
        mismatches = 0
        for inst in found:
            left = deadline - time.monotonic()
            if left <= 0:
                problems.append("deadline reached")
                break
            expected = dest.pinned or inst.expected
            try:
                transport, protocol = await asyncio.wait_for(
                    loop.create_connection(
                        factory,
                        inst.host,
                        inst.port,
                        ssl=self.client_ssl_context(),
                        server_hostname="",
                        ssl_handshake_timeout=max(0.1, min(left, self.handshake_timeout_s)),
                    ),
                    left,
                )
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                problems.append(f"{inst.host}:{inst.port}: {type(exc).__name__}: {exc}")
                continue
            problem = self.server_problem(transport.get_extra_info("ssl_object"), expected)
            if problem:
                mismatches += 1
                transport.abort()
                problems.append(f"{inst.host}:{inst.port}: {problem}")
                log.warning("%s: %s", dest, problem)
                continue
            return transport, protocol
        detail = "; ".join(problems) or "no attempt"
        if mismatches and mismatches == len(problems):
            raise IdentityMismatch(f"{dest}: {detail}")
        raise DialFailed(f"{dest}: every instance failed within {timeout}s: {detail}")

    def server_problem(self, ssl_object: Any, expected: ServiceID) -> str:
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        try:
            got = tls.identity_of(der).service
        except tls.IdentityError as exc:
            return f"server identity unusable: {exc}"
        if got.trust_domain.lower() != self.trust_domain.lower() or not got.same_service(expected):
            return f"identity mismatch: expected {expected.uri}, server presented {got.uri}"
        return ""

    async def check(self, target: Target) -> authz.Decision:
        """Would `target` accept us? Consul's `/v1/connect/intentions/check` (intentions:read)."""
        dest = destination_of(target)
        name = dest.pinned.service if dest.pinned else dest.name
        if dest.kind != SERVICE:
            return authz.Decision(True, "prepared query: the service behind it decides")
        try:
            resp = await self.client.get(
                "/v1/connect/intentions/check",
                params={"source": self.name, "destination": name},
            )
        except ConsulError as exc:
            return authz.Decision(False, f"intentions check failed: {exc}")
        body = resp.body if isinstance(resp.body, dict) else {}
        allowed = body.get("Allowed") is True
        return authz.Decision(
            allowed, f"intentions: {self.name} -> {name} {'allowed' if allowed else 'denied'}"
        )


def peer_of(obj: Any) -> tls.PeerIdentity:
    """The verified peer identity of a served connection: a StreamWriter, a transport, or
    anything with a `.transport` (an aiohttp request)."""
    transport = getattr(obj, "transport", obj)
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        raise Denied("not a mesh connection (no TLS)")
    return tls.identity_of(ssl_object.getpeercert(binary_form=True))
