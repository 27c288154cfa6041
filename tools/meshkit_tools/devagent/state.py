# SPDX-License-Identifier: MPL-2.0
"""The node's services and checks: registration rules, lifecycle, and health selection."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from meshkit_tools.devagent import sidecar as sidecar_mod
from meshkit_tools.devagent.catalog import (
    CRITICAL,
    PASSING,
    BadRequest,
    Check,
    Node,
    Service,
    serf_check,
)
from meshkit_tools.devagent.store import Store

SERVICE_TABLES = ("services", "checks")
ProxyResolver = Callable[[str, "dict[str, Any] | None"], "dict[str, Any] | None"]
_META_KEY = re.compile(r"^[a-zA-Z0-9_-]+$")


@dataclass
class Registration:
    """A validated registration ready to apply: the service and its checks."""

    service: Service
    checks: list[Check]


def _is_any(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return False


class State:
    def __init__(
        self,
        store: Store,
        node: Node,
        port_range: tuple[int, int] = (21000, 21255),
        *,
        allow_script_checks: bool = False,
    ) -> None:
        self.store = store
        self.node = node
        self.port_range = port_range
        self.allow_script_checks = allow_script_checks
        self.services: dict[str, Service] = {
            k: Service.from_row(v) for k, v in store.items("services").items()
        }
        self.checks: dict[str, Check] = {
            k: Check.from_row(v) for k, v in store.items("checks").items()
        }
        # Central service config (None = off): the registered Proxy block -> the stored one.
        self.resolver: ProxyResolver | None = None
        self.on_checks_changed: Callable[[], None] = lambda: None
        self.on_status_changed: Callable[[Check], None] = lambda chk: None
        # Per-name indexes, so a watcher of one service only wakes for changes that touch it
        # (as Consul's per-query watch sets do): "s:<name>", "c:<destination>", "node".
        self.name_index: dict[str, int] = dict(store.get("meta", "name_index") or {})
        self._touched: set[str] = set()

    # -- registration -----------------------------------------------------------------------

    def build(self, defn: dict[str, Any], token: str, source: str) -> list[Registration]:
        """Validate a decoded service definition into the parent and, maybe, its sidecar."""
        name = defn.get("Name") or ""
        if not name:
            raise BadRequest("Missing service name")
        svc = self._service(defn, source)
        checks = self._checks(
            svc, [c for c in [defn.get("Check"), *(defn.get("Checks") or [])] if c]
        )
        regs = [Registration(svc, checks)]
        connect = defn.get("Connect") or {}
        spec = connect.get("SidecarService")
        if spec is not None:
            others = list(self.services.values())
            side_def, side_checks = sidecar_mod.expand(svc, spec, token, others, self.port_range)
            try:
                side = self._service(side_def, source)
                side.sidecar_parent = svc.id
                side_regs = self._checks(side, side_checks or [])
            except BadRequest as exc:
                raise BadRequest(f"Invalid SidecarService: {exc}") from None
            regs.append(Registration(side, side_regs))
        return regs

    def _service(self, defn: dict[str, Any], source: str) -> Service:
        name = defn.get("Name") or ""
        if not name:
            raise BadRequest("Missing service name")
        address = defn.get("Address") or ""
        if _is_any(address):
            raise BadRequest("Invalid service address")
        meta = defn.get("Meta") or {}
        for key in meta:
            if not _META_KEY.match(key):
                raise BadRequest(f"Invalid Service Meta: Key contains invalid characters: {key!r}")
            if key.startswith("consul-"):
                raise BadRequest(f"Invalid Service Meta: Key prefix 'consul-' is reserved: {key!r}")
        weights = defn.get("Weights")
        if weights is not None and (weights.get("Passing") or 0) < 1:
            raise BadRequest("Invalid Weights: Passing must be greater than 0")
        connect = defn.get("Connect") or {}
        kind = defn.get("Kind") or ""
        if kind not in ("", "connect-proxy"):
            raise BadRequest(
                f"Validation failed: service kind {kind!r} is not supported by meshkit dev-agent"
            )
        svc = Service(
            id=defn.get("ID") or name,
            name=name,
            kind=kind,
            tags=list(defn.get("Tags") or []),
            address=address,
            port=int(defn.get("Port") or 0),
            meta=dict(meta),
            tagged_addresses=dict(defn.get("TaggedAddresses") or {}),
            weights=dict(weights) if weights else {"Passing": 1, "Warning": 1},
            enable_tag_override=bool(defn.get("EnableTagOverride")),
            proxy=defn.get("Proxy") if kind == "connect-proxy" else None,
            native=bool(connect.get("Native")),
            source=source,
            token=defn.get("Token") or "",
        )
        if kind == "connect-proxy":
            self._validate_proxy(svc, defn.get("Proxy"))
        elif defn.get("Proxy"):
            raise BadRequest("Validation failed: Proxy is only valid for a connect-proxy service")
        return svc

    @staticmethod
    def _validate_proxy(svc: Service, proxy: dict[str, Any] | None) -> None:
        p = proxy or {}
        if svc.port <= 0:
            raise BadRequest(
                "Validation failed: Port or SocketPath must be set for a connect-proxy"
            )
        dest = p.get("DestinationServiceName") or ""
        if not dest:
            raise BadRequest(
                "Validation failed: Proxy.DestinationServiceName must be non-empty for "
                "Connect proxy services"
            )
        if dest == "*":
            raise BadRequest(
                "Validation failed: Proxy.DestinationServiceName must not be a wildcard for "
                "Connect proxy services"
            )
        if svc.native:
            raise BadRequest(
                "Validation failed: A Proxy cannot also be Connect Native, only typical services"
            )
        seen: set[tuple[str, str, str]] = set()
        binds: set[str] = set()
        for up in p.get("Upstreams") or []:
            kind = up.get("DestinationType") or "service"
            if kind not in ("service", "prepared_query"):
                raise BadRequest(f"Validation failed: unknown upstream destination type: {kind!r}")
            up["DestinationType"] = kind
            uname = up.get("DestinationName") or ""
            if not uname:
                raise BadRequest("Validation failed: upstream destination name cannot be empty")
            if uname == "*":
                raise BadRequest(
                    "Validation failed: upstream destination name cannot be a wildcard"
                )
            socket_path = up.get("LocalBindSocketPath") or ""
            if not up.get("LocalBindPort") and not socket_path:
                raise BadRequest("Validation failed: upstream local bind port cannot be zero")
            if up.get("LocalBindPort") and socket_path:
                raise BadRequest(
                    "Validation failed: upstream cannot have both LocalBindPort and "
                    "LocalBindSocketPath"
                )
            if up.get("DestinationPeer") and up.get("Datacenter"):
                raise BadRequest(
                    "Validation failed: upstream cannot set both DestinationPeer and Datacenter"
                )
            key = (kind, uname, up.get("Datacenter") or "")
            if key in seen:
                raise BadRequest(
                    f"Validation failed: upstreams cannot contain duplicates of {kind}:{uname}"
                )
            seen.add(key)
            bind = (
                socket_path or f"{up.get('LocalBindAddress') or '127.0.0.1'}:{up['LocalBindPort']}"
            )
            if bind in binds:
                raise BadRequest(
                    "Validation failed: upstreams cannot contain duplicates by local bind address "
                    f"and port; {bind!r} is specified twice"
                )
            binds.add(bind)

    def _checks(self, svc: Service, defs: list[dict[str, Any]]) -> list[Check]:
        out: list[Check] = []
        for i, d in enumerate(defs):
            check_id = (
                d.get("CheckID")
                or d.get("ID")
                or (f"service:{svc.id}" if len(defs) == 1 else f"service:{svc.id}:{i + 1}")
            )
            chk = self.check_from_def(d, check_id, svc)
            out.append(chk)
        return out

    def check_from_def(self, d: dict[str, Any], check_id: str, svc: Service | None) -> Check:
        try:
            kind = check_kind(d, self.allow_script_checks)
        except BadRequest as exc:
            raise BadRequest(f"Invalid check: {exc}") from None
        status = d.get("Status") or CRITICAL
        if status not in (PASSING, "warning", CRITICAL):
            raise BadRequest(f"Invalid check: status {status!r} is not valid")
        definition = {
            k: v
            for k, v in d.items()
            if k
            in (
                "TCP",
                "HTTP",
                "Interval",
                "Timeout",
                "TTL",
                "AliasService",
                "AliasNode",
                "Header",
                "Method",
                "Body",
                "TLSSkipVerify",
                "DeregisterCriticalServiceAfter",
                "GRPC",
                "DockerContainerID",
                "ScriptArgs",
            )
        }
        return Check(
            check_id=check_id,
            name=d.get("Name") or (f"Service '{svc.name}' check" if svc else check_id),
            service_id=svc.id if svc else "",
            service_name=svc.name if svc else "",
            type=kind,
            status=status,
            notes=d.get("Notes") or "",
            definition=definition,
        )

    def apply(self, regs: list[Registration], *, replace_checks: bool) -> None:
        """Commit a validated registration: one index bump, old sidecar handled."""
        parent = regs[0].service
        keep = {r.service.id for r in regs}
        # Re-registering the parent without sidecar_service removes the old sidecar.
        for svc in list(self.services.values()):
            if svc.sidecar_parent == parent.id and svc.id not in keep:
                self._remove_service(svc.id)
        index = self.store.index + 1
        for reg in regs:
            old = self.services.get(reg.service.id)
            new = reg.service
            self._merge_central(new)
            new.create_index = old.create_index if old else index
            new.modify_index = old.modify_index if old and old.same_definition(new) else index
            if old is None or not old.same_definition(new):
                self._mark(new)
                if old is not None:
                    self._mark(old)
            self.services[new.id] = new
            self.store.put("services", new.id, new.row())
            new_ids = {c.check_id for c in reg.checks}
            if replace_checks:
                for chk in list(self.checks.values()):
                    if chk.service_id == new.id and chk.check_id not in new_ids:
                        self._remove_check(chk.check_id)
            for chk in reg.checks:
                prev = self.checks.get(chk.check_id)
                if prev is not None and prev.definition == chk.definition and prev.type == chk.type:
                    chk.status, chk.output = prev.status, prev.output
                    chk.create_index = prev.create_index
                    chk.modify_index = prev.modify_index
                else:
                    chk.create_index = chk.modify_index = index
                    self._mark(new)
                self.checks[chk.check_id] = chk
                self.store.put("checks", chk.check_id, chk.row())
        self._commit(*SERVICE_TABLES)
        self.on_checks_changed()

    def _merge_central(self, svc: Service) -> None:
        """Store a sidecar with the config entries merged in, keeping what was registered."""
        if self.resolver is None or svc.kind != "connect-proxy":
            return
        svc.registered_proxy = svc.proxy
        svc.proxy = self.resolver(svc.kind, svc.proxy)

    def remerge(self) -> int:
        """Apply changed config entries to every registered proxy, as Consul's service
        manager re-registers on a config change: one index bump, blocking queries wake."""
        index = self.store.index + 1
        changed = 0
        for svc in self.services.values():
            if svc.kind != "connect-proxy":
                continue
            # A proxy stored while central config was off (or loaded from -config-dir before
            # the entries were known) holds its registration in `proxy`.
            registered = svc.proxy if svc.registered_proxy is None else svc.registered_proxy
            target: dict[str, Any] | None = registered
            keep: dict[str, Any] | None = None  # central config switched off since it was stored
            if self.resolver is not None:
                target, keep = self.resolver(svc.kind, registered), registered
            if target == svc.proxy and keep == svc.registered_proxy:
                continue
            svc.proxy, svc.registered_proxy = target, keep
            svc.modify_index = index
            self._mark(svc)
            self.store.put("services", svc.id, svc.row())
            changed += 1
        if changed:
            self._commit("services")
        return changed

    def deregister(self, service_id: str) -> bool:
        if service_id not in self.services:
            return False
        self._remove_service(service_id)
        for svc in list(self.services.values()):
            if svc.sidecar_parent == service_id:
                self._remove_service(svc.id)
        self._commit(*SERVICE_TABLES)
        self.on_checks_changed()
        return True

    def _mark(self, svc: Service) -> None:
        self._touched.add("s:" + svc.name.lower())
        if svc.destination:
            self._touched.add("c:" + svc.destination.lower())

    def _mark_check(self, chk: Check) -> None:
        svc = self.services.get(chk.service_id) if chk.service_id else None
        if svc is not None:
            self._mark(svc)
        elif not chk.service_id:
            self._touched.add("node")

    def _commit(self, *tables: str) -> int:
        index = self.store.bump(*tables)
        if self._touched:
            for key in self._touched:
                self.name_index[key] = index
            self._touched.clear()
            self.store.put("meta", "name_index", self.name_index)
        return index

    def name_index_of(self, name: str, *, connect: bool = False) -> int:
        """The index a health/catalog query on `name` reports and blocks on."""
        key = ("c:" if connect else "s:") + name.lower()
        return max(self.name_index.get(key, 0), self.name_index.get("node", 0), 1)

    def _remove_service(self, service_id: str) -> None:
        old = self.services.get(service_id)
        if old is not None:
            self._mark(old)
        self.services.pop(service_id, None)
        self.store.delete("services", service_id)
        for chk in list(self.checks.values()):
            if chk.service_id == service_id:
                self._remove_check(chk.check_id)

    def _remove_check(self, check_id: str) -> None:
        chk = self.checks.get(check_id)
        if chk is not None:
            self._mark_check(chk)
        self.checks.pop(check_id, None)
        self.store.delete("checks", check_id)

    def add_check(self, chk: Check) -> None:
        prev = self.checks.get(chk.check_id)
        index = self.store.index + 1
        chk.create_index = prev.create_index if prev else index
        chk.modify_index = index
        self.checks[chk.check_id] = chk
        self.store.put("checks", chk.check_id, chk.row())
        self._mark_check(chk)
        self._commit("checks")
        self.on_checks_changed()

    def remove_check(self, check_id: str) -> bool:
        if check_id not in self.checks:
            return False
        self._remove_check(check_id)
        self._commit("checks")
        self.on_checks_changed()
        return True

    def set_status(self, check_id: str, status: str, output: str) -> bool:
        """Record a check result; bump the index only when something changed."""
        chk = self.checks.get(check_id)
        if chk is None:
            return False
        if chk.status == status and chk.output == output:
            return True
        changed = chk.status != status
        chk.status, chk.output = status, output
        chk.modify_index = self.store.index + 1
        self.store.put("checks", check_id, chk.row())
        self._mark_check(chk)
        self._commit("checks")
        if changed:
            self.on_status_changed(chk)
        return True

    # -- reads ------------------------------------------------------------------------------

    def index(self) -> int:
        return self.store.table_index(SERVICE_TABLES)

    def service_checks(self, service_id: str) -> list[Check]:
        return sorted(
            (c for c in self.checks.values() if c.service_id == service_id),
            key=lambda c: c.check_id,
        )

    def node_checks(self) -> list[Check]:
        own = [c for c in self.checks.values() if not c.service_id]
        return [serf_check(self.node.name), *sorted(own, key=lambda c: c.check_id)]

    def entry_checks(self, svc: Service) -> list[Check]:
        return [*self.node_checks(), *self.service_checks(svc.id)]

    def by_name(self, name: str, *, connect: bool = False) -> list[Service]:
        want = name.lower()
        if connect:
            found = [s for s in self.services.values() if s.destination.lower() == want]
        else:
            found = [s for s in self.services.values() if s.name.lower() == want]
        return sorted(found, key=lambda s: s.id)

    def passing(self, svc: Service, ignore: tuple[str, ...] = ()) -> bool:
        return all(c.status == PASSING for c in self.entry_checks(svc) if c.check_id not in ignore)


def check_kind(d: dict[str, Any], allow_script: bool) -> str:
    if d.get("ScriptArgs"):
        if not allow_script:
            raise BadRequest(
                "Scripts are disabled on this agent; to enable, configure "
                "'enable_script_checks' or 'enable_local_script_checks' to true"
            )
        return "script"
    if d.get("TTL"):
        return "ttl"
    if d.get("AliasService") or d.get("AliasNode"):
        return "alias"
    for key, kind in (
        ("HTTP", "http"),
        ("TCP", "tcp"),
        ("GRPC", "grpc"),
        ("DockerContainerID", "docker"),
    ):
        if d.get(key):
            if not d.get("Interval") or d["Interval"] <= 0:
                raise BadRequest("Interval must be > 0 for Script, HTTP, or TCP checks")
            return kind
    raise BadRequest(
        "TTL must be > 0 for TTL checks; one of Script, HTTP, TCP, gRPC, Docker, alias "
        "or TTL must be set"
    )
