# SPDX-License-Identifier: MPL-2.0
"""The running proxy: listeners diffed from a `ProxyConfig`, readiness, drain.

`apply()` is the only way configuration changes, in both modes. Listeners are keyed
(`public`, `upstream:<type>:<name>`); a key that disappears is closed, a new key is opened, a
key whose bind address changed is rebound, and a key whose other settings changed is updated in
place for new connections. Open connections are never touched by `apply`.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from meshkit import effective, inbound, upstream
from meshkit import metrics as m
from meshkit.authz import Authorizer, StaticAuthorizer
from meshkit.certstore import CertStore
from meshkit.config import ProxyConfig, PublicListener, UpstreamListener

log = logging.getLogger("meshkit.proxy")

PUBLIC = "public"
BACKLOG = 4096


class ApplyError(RuntimeError):
    """A listener could not be opened (port in use, address not available)."""


def _bind(spec: PublicListener | UpstreamListener) -> tuple[str, int]:
    return (spec.bind_host, spec.bind_port)


class _Listener:
    """One listening socket and what its new connections get.

    `apply` swaps `spec` and `labels` in place (same bind address); each accepted connection
    reads them when it arrives. `server` is None only while the socket is being opened.
    """

    __slots__ = ("bind", "key", "labels", "server", "spec")

    def __init__(self, key: str, spec: PublicListener | UpstreamListener, labels: m.Labels) -> None:
        self.key = key
        self.bind = _bind(spec)
        self.spec = spec
        self.labels = labels
        self.server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        for sock in self.server.sockets if self.server is not None else ():
            return int(sock.getsockname()[1])
        return 0


class Proxy:
    def __init__(self, certs: CertStore | None = None, *, reuse_port: bool = False) -> None:
        self.certs = certs or CertStore()
        self.metrics = m.Metrics()
        self.config: ProxyConfig | None = None
        self.authorizer: Authorizer = StaticAuthorizer()
        self.listeners: dict[str, _Listener] = {}
        self.conditions: dict[str, bool] = {}
        self.condition_why: dict[str, str] = {}
        self.inbound_labels: m.Labels = m.labels("")
        self.reuse_port = reuse_port
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._lock = asyncio.Lock()
        self._pending_apply = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.certs.listeners.append(self._certs_changed)
        if self.certs.loaded:
            self.metrics.inc("cert_loads_total", ())
        self.metrics.set("control_plane_reachable", (), 1)

    # -- readiness ----------------------------------------------------------------------
    def set_condition(self, name: str, ok: bool, why: str = "") -> None:
        """Extra readiness conditions (Consul mode: `control_plane`); `why` goes on /ready."""
        self.conditions[name] = ok
        self.condition_why[name] = "" if ok else why

    def set_control_plane_reachable(self, ok: bool, why: str = "") -> None:
        self.metrics.set("control_plane_reachable", (), 1 if ok else 0)
        self.set_condition("control_plane", ok, why)

    def not_ready_reasons(self) -> list[str]:
        reasons: list[str] = []
        if not self.certs.loaded:
            reasons.append("TLS material not loaded")
        if self.config is None:
            reasons.append("no configuration applied")
        elif self._pending_apply:
            reasons.append("listeners not open yet")
        if self.draining:
            reasons.append("draining")
        reasons += [
            f"condition {name} not met"
            + (f" ({why})" if (why := self.condition_why.get(name)) else "")
            for name, ok in self.conditions.items()
            if not ok
        ]
        return reasons

    @property
    def ready(self) -> bool:
        return not self.not_ready_reasons()

    # -- configuration ------------------------------------------------------------------
    def port_of(self, key: str) -> int:
        """The bound port of a listener (useful when the config asked for port 0)."""
        return self.listeners[key].port

    async def apply(self, config: ProxyConfig) -> None:
        """Make the listeners match `config`; raises ConfigError/ApplyError on problems."""
        config.check()
        async with self._lock:
            self.config = config
            self.authorizer = config.authorizer
            self.inbound_labels = m.labels(config.service)
            if not self.certs.loaded:
                # Listeners start once certificates exist, upstream ones included: Consul's
                # built-in proxy opens its upstream listeners at once, and their dials fail
                # until a client certificate arrives.
                self._pending_apply = True
                log.info("configuration stored; listeners open once TLS material is loaded")
                return
            await self._apply_listeners(config)
            self._pending_apply = False
            effective.report(self.metrics, config)

    def _desired(
        self, config: ProxyConfig
    ) -> dict[str, tuple[PublicListener | UpstreamListener, m.Labels]]:
        want: dict[str, tuple[PublicListener | UpstreamListener, m.Labels]] = {}
        if config.public is not None:
            want[PUBLIC] = (config.public, m.labels(config.service))
        for up in config.upstreams:
            want[f"upstream:{up.key}"] = (up, m.labels(config.service, up.name, up.dst_type))
        return want

    async def _apply_listeners(self, config: ProxyConfig) -> None:
        want = self._desired(config)
        for key in [k for k in self.listeners if k not in want]:
            self._close(key, "removed")
        errors: list[str] = []
        for key, (spec, lbl) in want.items():
            have = self.listeners.get(key)
            if have is not None and have.bind == _bind(spec):
                have.spec, have.labels = spec, lbl  # new connections pick it up
                continue
            if have is not None:
                self._close(key, f"rebinding to {spec.bind_host}:{spec.bind_port}")
            try:
                await self._open(key, spec, lbl)
            except OSError as exc:
                where = f"{spec.bind_host}:{spec.bind_port}"
                errors.append(f"{key}: cannot listen on {where}: {exc.strerror or exc}")
        if errors:
            raise ApplyError("\n".join(errors))
        self.metrics.set("ready", (), 1 if self.ready else 0)

    async def _open(self, key: str, spec: PublicListener | UpstreamListener, lbl: m.Labels) -> None:
        loop = asyncio.get_running_loop()
        lst = _Listener(key, spec, lbl)

        def accept() -> asyncio.BaseProtocol:
            now = lst.spec  # the kind never changes: it is part of the key
            if isinstance(now, PublicListener):
                return inbound.accept(self, now)
            return upstream.accept(self, now, lst.labels)

        lst.server = await loop.create_server(
            accept,
            spec.bind_host,
            spec.bind_port,
            family=socket.AF_INET6 if ":" in spec.bind_host else socket.AF_UNSPEC,
            backlog=BACKLOG,
            reuse_address=True,
            reuse_port=self.reuse_port or None,
        )
        self.listeners[key] = lst
        self.metrics.declare_conns(isinstance(spec, PublicListener), lbl)
        log.info("listener %s on %s:%d", key, spec.bind_host, lst.port)

    def _close(self, key: str, why: str) -> None:
        lst = self.listeners.pop(key)
        if lst.server is not None:
            lst.server.close()  # stops accepting; open connections are left alone
        log.info("listener %s on %s:%d closed (%s)", key, lst.bind[0], lst.bind[1], why)

    def _certs_changed(self) -> None:
        self.metrics.inc("cert_loads_total", ())
        if self._pending_apply and self.config is not None:
            config = self.config
            task = asyncio.get_running_loop().create_task(self._late_apply(config))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _late_apply(self, config: ProxyConfig) -> None:
        try:
            await self.apply(config)
        except Exception as exc:
            log.error("opening listeners failed: %s", exc)

    # -- connections and shutdown -------------------------------------------------------
    @property
    def open_connections(self) -> int:
        return len(self.metrics.flows)

    def flow_closed(self) -> None:
        if not self.metrics.flows:
            self._idle.set()

    async def drain(self, timeout: float) -> int:
        """Stop accepting, wait for open connections up to `timeout`; returns those cut off."""
        self.draining = True
        self.metrics.set("ready", (), 0)
        for key in list(self.listeners):
            self._close(key, "draining")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.metrics.flows and loop.time() < deadline:
            self._idle.clear()
            try:
                async with asyncio.timeout(min(0.2, max(deadline - loop.time(), 0.001))):
                    await self._idle.wait()
            except TimeoutError:
                pass
        left = list(self.metrics.flows)
        for flow in left:
            flow.abort()
        return len(left)
