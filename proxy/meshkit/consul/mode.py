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
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from meshkit.config import (
    DEFAULT_DRAIN_TIMEOUT_MS,
    ConfigError,
    ProxyConfig,
    PublicListener,
    UpstreamListener,
)
from meshkit.consul import configfile
from meshkit.consul.agent_config import (
    AgentConfigError,
    Registration,
    UpstreamSpec,
    lookup_sidecar,
    parse_registration,
)
from meshkit.consul.certs import ConsulCerts
from meshkit.consul.client import ConsulClient, ConsulError, ConsulHTTPError, ConsulUnavailable
from meshkit.consul.config_keys import KeyWarner
from meshkit.consul.configfile import ConsulFile
from meshkit.consul.discovery import ConsulResolver
from meshkit.consul.intentions import AgentAuthorizer, IntentionsAuthorizer
from meshkit.consul.register import Registrar, SelfRegistration
from meshkit.consul.settings import Settings, SettingsError, resolve
from meshkit.consul.watch import MalformedAnswer, Mode, Policy, Watch, WatchGroup, reason_of
from meshkit.spiffe import SpiffeError, parse_service_uri

if TYPE_CHECKING:
    from meshkit.authz import Authorizer
    from meshkit.flags import CommandLine
    from meshkit.runtime import Proxy

log = logging.getLogger("meshkit.consul")

T = TypeVar("T")

STARTUP_DEADLINE_S = 30.0
STATUS_INTERVAL_S = 0.5


class StartupError(RuntimeError):
    """The proxy cannot start; the message says why and what to change."""


def settings_from(cmd: CommandLine, env: Mapping[str, str] | None = None) -> Settings:
    """The command line holds flags only; `resolve` layers them over the environment."""
    return resolve(cmd.http, env)


def explain(exc: ConsulError, what: str, settings: Settings, service: str = "") -> str:
    """Turn a startup failure into a message that names the fix."""
    if isinstance(exc, ConsulHTTPError) and exc.status == 403:
        source = settings.token_source or "no token: the agent's default token was used"
        need = f"service:write on {service!r}" if service else "the needed ACL rights"
        return (
            f"{what}: Consul refused it (HTTP 403: {exc.message}). The ACL token ({source}) "
            f"needs {need}; a token with a service identity for {service or 'the service'} "
            "has it. Pass it with -token, -token-file or CONSUL_HTTP_TOKEN(_FILE)."
        )
    if isinstance(exc, ConsulUnavailable):
        return (
            f"{what}: {exc}. Is the Consul agent running? Set -http-addr or CONSUL_HTTP_ADDR "
            "to its HTTP address."
        )
    return f"{what}: {exc}"


async def _startup_call(label: str, call: Callable[[], Awaitable[T]], deadline: float) -> T:
    """Retry only "agent unreachable" at startup (it may be starting too), within a bound."""
    delay = 0.5
    while True:
        try:
            return await call()
        except ConsulUnavailable as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s: %s; retrying in %.1fs", label, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


@dataclass
class _Upstream:
    spec: UpstreamSpec
    resolver: ConsulResolver


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
        self.upstreams: dict[str, _Upstream] = {}
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
                    self.proxy_id = await _startup_call(
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
            reg = self._registration_from_flags()
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
        self._spawn(self._report_status())

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
            await _startup_call("reading our registration", lambda: watch.fetch(False), deadline)
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

    def _registration_from_flags(self) -> Registration:
        cmd = self.cmd
        assert cmd.service is not None
        ups = tuple(
            UpstreamSpec(
                dst_type=u.dst_type,
                name=u.name,
                datacenter="",
                bind_host=u.host,
                bind_port=u.port,
            )
            for u in cmd.upstreams
        )
        listen = cmd.listen
        local = cmd.service_addr
        return Registration(
            proxy_id="",
            service=cmd.service,
            service_id=cmd.service,
            bind_host=listen[0] if listen else None,
            bind_port=listen[1] if listen else 0,
            local_host=local[0] if local else "127.0.0.1",
            local_port=local[1] if local else 0,
            upstreams=ups,
        )

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
            await _startup_call("fetching CA roots", lambda: certs.roots.fetch(False), deadline)
        except ConsulError as exc:
            raise StartupError(explain(exc, "fetching the CA roots", self.settings)) from exc
        try:
            await _startup_call("fetching the leaf", lambda: certs.leaf.fetch(False), deadline)
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
        if getattr(self.cmd, "authz", None) == "agent":
            self.authorizer = AgentAuthorizer(self.client, service)
            return
        intentions = IntentionsAuthorizer(self.client, service, self.policy)
        if self.certs is not None:
            intentions.trust_domain = self.certs.trust_domain
        self.intentions = intentions
        self.group.add(intentions.watch)
        try:
            await _startup_call(
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
        cmd = self.cmd
        assert reg.bind_host is not None
        self_reg = SelfRegistration(
            service=reg.service,
            listen_host=reg.bind_host,
            listen_port=reg.bind_port,
            local_host=reg.local_host,
            local_port=reg.local_port,
            upstreams=reg.upstreams,
            register_id=getattr(cmd, "register_id", None) or "",
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
    def _resolver_for(self, spec: UpstreamSpec) -> ConsulResolver:
        have = self.upstreams.get(spec.key)
        if have is not None:
            have.spec = spec
            return have.resolver
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
        self.upstreams[spec.key] = _Upstream(spec, resolver)
        self.group.add(resolver.watch)
        resolver.start()
        return resolver

    def build_config(self, reg: Registration) -> ProxyConfig:
        assert self.authorizer is not None
        public = None
        if reg.bind_host is not None and not self.expired:
            public = PublicListener(
                bind_host=reg.bind_host,
                bind_port=reg.bind_port,
                local_host=reg.local_host,
                local_port=reg.local_port,
                local_connect_timeout_ms=reg.local_connect_timeout_ms,
                handshake_timeout_ms=reg.handshake_timeout_ms,
                protocol=reg.protocol,
            )
        upstreams: tuple[UpstreamListener, ...] = ()
        if not self.expired:
            upstreams = tuple(
                UpstreamListener(
                    name=spec.name,
                    resolver=self._resolver_for(spec),
                    bind_host=spec.bind_host,
                    bind_port=spec.bind_port,
                    dst_type=spec.dst_type,
                    connect_timeout_ms=spec.connect_timeout_ms,
                    datacenter=spec.datacenter,
                    protocol=spec.protocol,
                )
                for spec in reg.upstreams
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
        for key in [k for k in self.upstreams if k not in wanted]:
            gone = self.upstreams.pop(key)
            self.group.remove(gone.resolver.watch)
            await gone.resolver.stop()

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

    # -- fail-static reporting ----------------------------------------------------------
    async def _report_status(self) -> None:
        last: bool | None = None
        while True:
            reachable = self.group.reachable
            if reachable != last:
                if reachable:
                    log.info("Consul reachable; state is current")
                else:
                    failing = ", ".join(f"{s.name} ({s.last_error})" for s in self.group.failing())
                    log.warning("Consul unreachable, serving the last known state: %s", failing)
                last = reachable
            self.proxy.set_control_plane_reachable(
                reachable, "; ".join(reason_of(s) for s in self.group.failing())
            )
            for watch in self.group.watches:
                lbl = (("watch", watch.name),)
                self.proxy.metrics.set(
                    "consul_watch_healthy", lbl, 1 if watch.status.healthy else 0
                )
                self.proxy.metrics.set("consul_watch_failures", lbl, watch.status.failures)
                age = time.monotonic() - watch.status.last_success if watch.status.has_value else -1
                self.proxy.metrics.set("consul_watch_age_seconds", lbl, round(age, 1))
            await asyncio.sleep(STATUS_INTERVAL_S)

    # -- lifecycle ----------------------------------------------------------------------
    def _spawn(self, coro: Awaitable[None]) -> None:
        self.tasks.append(asyncio.ensure_future(coro))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        for up in list(self.upstreams.values()):
            await up.resolver.stop()
        self.upstreams.clear()
        if self.certs is not None:
            self.certs.stop()
        if self.registrar is not None:
            await self.registrar.deregister()
            self.registrar = None
        await self.client.close()


async def serve(cmd: CommandLine, *, ready: asyncio.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT; then drain, deregister and return the exit code."""
    from meshkit.admin import AdminServer
    from meshkit.certstore import CertStore
    from meshkit.runtime import Proxy

    try:
        certs = CertStore(cmd.tls_engine)
    except ImportError as exc:
        print(f"meshkit-proxy: -tls-engine {cmd.tls_engine}: {exc}", flush=True, file=_stderr())
        return 2
    log.debug("TLS engine: %s", certs.engine)
    proxy = Proxy(certs)
    file: ConsulFile | None = None
    if cmd.consul_file:
        try:
            file = configfile.load(cmd.consul_file)
        except ConfigError as exc:
            for problem in exc.problems:
                print(f"meshkit-proxy: {problem}", flush=True, file=_stderr())
            return 2
    try:
        mode = ConsulMode(cmd, proxy, file=file)
    except SettingsError as exc:
        log.error("%s", exc)
        print(f"meshkit-proxy: {exc}", flush=True, file=_stderr())
        return 2
    admin: AdminServer | None = None
    try:
        await mode.start()
    except StartupError as exc:
        print(f"meshkit-proxy: {exc}", flush=True, file=_stderr())
        return 1
    admin_bind = cmd.admin_bind or (file.admin if file else None)
    if admin_bind is not None:
        admin = AdminServer(proxy)
        await admin.start(*admin_bind)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Static mode reloads its file on SIGHUP; here everything already follows Consul live, so
    # SIGHUP (sent by the same unit files and scripts) must only not kill the proxy.
    loop.add_signal_handler(
        signal.SIGHUP, lambda: log.info("SIGHUP: Consul mode follows the agent live; no reload")
    )
    log.info(
        "serving as %s (Consul mode%s)",
        mode.registration.service if mode.registration else "?",
        f", from {file.source}" if file else "",
    )
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("shutting down: draining open connections")
    drain_ms = proxy.config.drain_timeout_ms if proxy.config else DEFAULT_DRAIN_TIMEOUT_MS
    cut = await proxy.drain(drain_ms / 1000.0)
    if cut:
        log.warning("%d connection(s) cut at the drain deadline", cut)
    await mode.close()
    if admin is not None:
        admin.close()
    return 0


def _stderr() -> Any:
    import sys

    return sys.stderr


def run(cmd: CommandLine) -> int:
    """Synchronous entry for `meshkit-proxy` (proxy_main.py calls this lazily)."""
    from meshkit.proxy_main import install_loop
    from meshkit.workers import WorkersError, check_consul_mode

    # One process: every worker would run its own Consul watches and leaf-certificate requests
    # (N times the agent load, N leaves to rotate), so `auto` is 1 here and N > 1 is refused.
    try:
        check_consul_mode(cmd.workers)
    except WorkersError as exc:
        print(f"meshkit-proxy: {exc}", file=_stderr())
        return 2
    try:
        install_loop(getattr(cmd, "event_loop", "auto"))
    except ImportError:
        print("meshkit-proxy: -event-loop uvloop: uvloop is not installed", file=_stderr())
        return 2
    return asyncio.run(serve(cmd))
