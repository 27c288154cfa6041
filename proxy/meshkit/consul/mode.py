# SPDX-License-Identifier: MPL-2.0
"""Consul mode: the proxy's identity, listeners, certificates, targets and intentions all
come from the local Consul agent, and every change is applied live.

Three ways to say who we are, as `consul connect proxy` has them (precedence in this order):
`-proxy-id ID`, `-sidecar-for SERVICE_ID` (agent mode: follow our own registration with a
hash-blocking watch) and `-service NAME` (flag mode: listeners from the flags, optionally
`-register`ed); or a `-config` file with `mode: consul` (file mode: flag mode plus what flags
cannot say, such as an upstream's datacenter; see configfile.py). Startup problems are
reported once, clearly, with exit code 1; afterwards Consul failures only degrade to
fail-static (last good state kept, reported on /metrics and /ready) and recover by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from meshkit.config import (
    DEFAULT_DRAIN_TIMEOUT_MS,
    ConfigError,
    ProxyConfig,
    PublicListener,
    UpstreamListener,
)
from meshkit.consul.certs import ConsulCerts
from meshkit.consul.client import ConsulClient, ConsulError, ConsulHTTPError
from meshkit.consul.config_keys import KeyWarner
from meshkit.consul.configfile import ConsulFile
from meshkit.consul.discovery import ConsulResolver
from meshkit.consul.errors import StartupError, explain, startup_call
from meshkit.consul.intentions import AgentAuthorizer, IntentionsAuthorizer
from meshkit.consul.register import Registrar, SelfRegistration
from meshkit.consul.registration import (
    AgentConfigError,
    Registration,
    lookup_sidecar,
    parse_registration,
    registration_from_flags,
)
from meshkit.consul.settings import Settings, SettingsError, resolve
from meshkit.consul.status import report_status
from meshkit.consul.watch import MalformedAnswer, Mode, Policy, Watch, WatchGroup
from meshkit.spiffe import SpiffeError, parse_service_uri

if TYPE_CHECKING:
    from meshkit.authz import Authorizer
    from meshkit.flags import CommandLine
    from meshkit.runtime import Proxy

log = logging.getLogger("meshkit.consul")

STARTUP_DEADLINE_S = 30.0


def settings_from(cmd: CommandLine, env: Mapping[str, str] | None = None) -> Settings:
    """The command line holds flags only; `resolve` layers them over the environment."""
    return resolve(cmd.http, env)


class ConsulMode:
    """Owns the client, the watches and the mapping from Consul state to `Proxy.apply`."""

    def __init__(
        self,
        cmd: CommandLine,
        proxy: Proxy,
        *,
        settings: Settings | None = None,
        policy: Policy | None = None,
        file: ConsulFile | None = None,
    ) -> None:
        self.cmd, self.proxy, self.file = cmd, proxy, file
        self.settings = settings or settings_from(cmd)
        self.policy = policy or Policy()
        self.client = ConsulClient(self.settings)
        self.group = WatchGroup()
        self.registration: Registration | None = None
        self.proxy_id = ""
        self.local_dc = "dc1"
        self.authorizer: Authorizer | None = None
        self.intentions: IntentionsAuthorizer | None = None
        self.certs: ConsulCerts | None = None
        self.service_watch: Watch[Registration] | None = None
        self.resolvers: dict[str, ConsulResolver] = {}  # by upstream key
        self.registrar: Registrar | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.expired = False
        self._apply_lock = asyncio.Lock()
        self.key_warner = KeyWarner(self.client)

    # -- startup ------------------------------------------------------------------------
    async def start(self) -> None:
        """Everything needed before serving; raises StartupError with a clear message."""
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        try:
            await self._start(deadline)
        except StartupError:
            await self.close()
            raise
        except (ConsulError, AgentConfigError, ConfigError, SettingsError, ValueError) as exc:
            await self.close()
            raise StartupError(str(exc)) from exc

    async def _start(self, deadline: float) -> None:
        cmd = self.cmd
        if cmd.proxy_id or cmd.sidecar_for:
            if cmd.proxy_id:
                self.proxy_id = cmd.proxy_id
            else:
                assert cmd.sidecar_for is not None
                parent = cmd.sidecar_for
                try:
                    self.proxy_id = await startup_call(
                        "finding the sidecar", lambda: lookup_sidecar(self.client, parent), deadline
                    )
                except ConsulError as exc:
                    raise StartupError(
                        explain(exc, f"looking up the sidecar for {parent!r}", self.settings)
                    ) from exc
                log.info("-sidecar-for %s: proxy service ID %s", parent, self.proxy_id)
            reg = await self._fetch_registration(deadline)
        elif self.file is not None:
            reg = self.file.registration
        else:
            reg = registration_from_flags(self.cmd)
        self.registration = reg

        await self._start_certs(reg.service, deadline)
        await self._start_authz(reg.service, deadline)
        if self.cmd.register:
            await self._self_register(reg)
        await self._apply(reg, startup=True)

        if self.service_watch is not None:
            self._spawn(self.service_watch.run())
        assert self.certs is not None
        self._spawn(self.certs.roots.run())
        self._spawn(self.certs.leaf.run())
        if self.intentions is not None:
            self._spawn(self.intentions.watch.run())
        if self.registrar is not None:
            self.registrar.start()
        self._spawn(report_status(self.group, self.proxy))

    async def _fetch_registration(self, deadline: float) -> Registration:
        proxy_id = self.proxy_id
        path = f"/v1/agent/service/{proxy_id}"

        def decode(resp: Any) -> Registration:
            return parse_registration(resp.body, proxy_id)

        watch: Watch[Registration] = Watch(
            self.client,
            f"registration:{proxy_id}",
            path,
            mode=Mode.HASH,
            decode=decode,
            on_update=self._on_registration,
            policy=self.policy,
        )
        try:
            await startup_call("reading our registration", lambda: watch.fetch(False), deadline)
        except ConsulHTTPError as exc:
            if exc.status == 404:
                raise StartupError(
                    f"no service with ID {proxy_id!r} is registered on the local Consul agent "
                    f"({self.settings.describe()}); register the sidecar first or fix -proxy-id"
                ) from exc
            raise StartupError(
                explain(exc, f"reading registration {proxy_id!r}", self.settings)
            ) from exc
        except ConsulError as exc:
            raise StartupError(
                explain(exc, f"reading registration {proxy_id!r}", self.settings)
            ) from exc
        self.service_watch = self.group.add(watch)
        assert watch.value is not None
        return watch.value

    async def _start_certs(self, service: str, deadline: float) -> None:
        certs = ConsulCerts(
            self.client,
            service,
            self.proxy.certs,
            on_expired=self._leaf_expired,
            on_renewed=self._leaf_renewed,
            policy=self.policy,
        )
        self.certs = certs
        self.group.add(certs.roots)
        self.group.add(certs.leaf)
        try:
            await startup_call("fetching CA roots", lambda: certs.roots.fetch(False), deadline)
        except ConsulError as exc:
            raise StartupError(explain(exc, "fetching the CA roots", self.settings)) from exc
        try:
            await startup_call("fetching the leaf", lambda: certs.leaf.fetch(False), deadline)
        except ConsulError as exc:
            raise StartupError(
                explain(
                    exc, f"fetching the leaf certificate for {service!r}", self.settings, service
                )
            ) from exc
        if not self.proxy.certs.loaded:
            raise StartupError(f"the leaf certificate for {service!r} from Consul is unusable")
        # Our own datacenter is in our identity; /v1/agent/self may need agent:read we lack.
        with contextlib.suppress(SpiffeError):
            self.local_dc = parse_service_uri(self.proxy.certs.leaf_uri).datacenter

    async def _start_authz(self, service: str, deadline: float) -> None:
        if self.cmd.authz == "agent":
            self.authorizer = AgentAuthorizer(self.client, service)
            return
        intentions = IntentionsAuthorizer(self.client, service, self.policy)
        if self.certs is not None:
            intentions.trust_domain = self.certs.trust_domain
        self.intentions = intentions
        self.group.add(intentions.watch)
        try:
            await startup_call(
                "reading intentions", lambda: intentions.watch.fetch(False), deadline
            )
        except MalformedAnswer as exc:
            # No last good state yet: start failing closed (every peer denied) and let the
            # watch retry, rather than exit over one unreadable answer.
            intentions.watch.status.failures = 1
            intentions.watch.status.last_error = str(exc)
            log.warning("intentions for %r: %s; denying every peer until it reads", service, exc)
        except ConsulError as exc:
            raise StartupError(
                explain(exc, f"reading the intentions for {service!r}", self.settings, service)
            ) from exc
        self.authorizer = intentions

    async def _self_register(self, reg: Registration) -> None:
        assert reg.public is not None  # flags: -register requires -listen
        self_reg = SelfRegistration(
            service=reg.service,
            listen_host=reg.public.bind_host,
            listen_port=reg.public.bind_port,
            local_host=reg.public.local_host,
            local_port=reg.public.local_port,
            upstreams=reg.upstreams,
            register_id=self.cmd.register_id or "",
        )
        registrar = Registrar(self.client, self_reg)
        try:
            await registrar.register()
        except ConsulError as exc:
            raise StartupError(
                explain(exc, f"registering {self_reg.proxy_id!r}", self.settings, reg.service)
            ) from exc
        self.registrar = registrar

    # -- applying Consul state ----------------------------------------------------------
    def _resolver_for(self, spec: UpstreamListener) -> ConsulResolver:
        have = self.resolvers.get(spec.key)
        if have is not None:
            return have
        certs = self.certs
        resolver = ConsulResolver(
            self.client,
            spec.dst_type,
            spec.name,
            spec.datacenter,
            local_dc=lambda: self.local_dc,
            trust_domain=lambda: certs.trust_domain if certs else "consul",
            policy=self.policy,
        )
        self.resolvers[spec.key] = resolver
        self.group.add(resolver.watch)
        resolver.start()
        return resolver

    def build_config(self, reg: Registration) -> ProxyConfig:
        assert self.authorizer is not None
        public: PublicListener | None = None
        upstreams: tuple[UpstreamListener, ...] = ()
        if not self.expired:
            public = reg.public
            upstreams = tuple(
                replace(spec, resolver=self._resolver_for(spec)) for spec in reg.upstreams
            )
        file = self.file
        if self.proxy_id:
            source = f"Consul registration {self.proxy_id!r}"
        else:
            source = file.source if file else "command line (Consul)"
        return ProxyConfig(
            service=reg.service,
            public=public,
            upstreams=upstreams,
            authorizer=self.authorizer,
            admin=self.cmd.admin_bind or (file.admin if file else None),
            allow_non_loopback_service=self.cmd.allow_non_loopback_service
            or (file.allow_non_loopback_service if file else False),
            drain_timeout_ms=file.drain_timeout_ms if file else DEFAULT_DRAIN_TIMEOUT_MS,
            source=source,
        )

    async def _apply(self, reg: Registration, *, startup: bool = False) -> None:
        async with self._apply_lock:
            if self.registration is not None and reg.service != self.registration.service:
                log.error(
                    "registration %s now names service %r instead of %r; restart the proxy to "
                    "change identity (change ignored)",
                    self.proxy_id,
                    reg.service,
                    self.registration.service,
                )
                return
            config = self.build_config(reg)
            try:
                config.check()
            except ConfigError as exc:
                if startup:
                    raise
                log.error("registration change refused, keeping the previous listeners:\n%s", exc)
                return
            try:
                await self.proxy.apply(config)
            except Exception as exc:
                if startup:
                    raise StartupError(f"opening listeners: {exc}") from exc
                log.error("applying the registration change failed: %s", exc)
                return
            self.registration = reg
            await self._drop_unused(reg)
        await self.key_warner.check(reg)  # central config keys we do not apply, once each

    async def _drop_unused(self, reg: Registration) -> None:
        wanted = {spec.key for spec in reg.upstreams} if not self.expired else set()
        for key in [k for k in self.resolvers if k not in wanted]:
            gone = self.resolvers.pop(key)
            self.group.remove(gone.watch)
            await gone.stop()

    async def _on_registration(self, reg: Registration) -> None:
        if self.registration is None:
            return  # startup: applied by start()
        log.info("registration %s changed; applying", self.proxy_id)
        await self._apply(reg)

    async def _leaf_expired(self) -> None:
        self.expired = True
        self.proxy.set_condition("leaf_valid", False)
        if self.registration is not None:
            await self._apply(self.registration)

    async def _leaf_renewed(self) -> None:
        self.expired = False
        self.proxy.set_condition("leaf_valid", True)
        if self.registration is not None:
            await self._apply(self.registration)

    # -- lifecycle ----------------------------------------------------------------------
    def _spawn(self, coro: Awaitable[None]) -> None:
        self.tasks.append(asyncio.ensure_future(coro))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        for resolver in list(self.resolvers.values()):
            await resolver.stop()
        self.resolvers.clear()
        if self.certs is not None:
            self.certs.stop()
        if self.registrar is not None:
            await self.registrar.deregister()
            self.registrar = None
        await self.client.close()
