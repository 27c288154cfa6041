# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)
"""``proxy-defaults`` and ``service-defaults`` config entries: one reader, one normalised view.

Consul 1.7 stores a ``proxy-defaults`` entry named ``web`` and a ``service-defaults`` Protocol
of ``carrier-pigeon`` without complaint (recorded: consul-1.7.14-edges e16, e18) and only
fails later, when a proxy is configured. So the rules are checked here, before anything is
written, and every problem names the field and the fix. The same reader serves the
``consul_config_entry`` module and the mesh model's ``proxy_defaults`` / per-service
``defaults``, so both refuse the same input with the same words.

Runs on managed hosts: Python 3.8 syntax at run time, no ansible imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible_collections.meshkit.connect.plugins.module_utils.consul_api import (
    ConsulClient,
    ConsulError,
    segment,
)
from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import (
    ModelError,
    Problem,
)

PROXY_DEFAULTS = "proxy-defaults"
SERVICE_DEFAULTS = "service-defaults"
KINDS = (PROXY_DEFAULTS, SERVICE_DEFAULTS)
PROTOCOLS = ("tcp", "http", "http2", "grpc")
MESH_GATEWAY_MODES = ("", "none", "local", "remote")
EXPOSE_PROTOCOLS = ("http", "http2")

# Which snake_case field each kind takes, and its name in Consul's API.
FIELDS = {
    PROXY_DEFAULTS: {"config": "Config", "mesh_gateway": "MeshGateway", "expose": "Expose"},
    SERVICE_DEFAULTS: {
        "protocol": "Protocol",
        "mesh_gateway": "MeshGateway",
        "expose": "Expose",
        "external_sni": "ExternalSNI",
    },
}
_EXPOSE_KEYS = ("checks", "paths")
_PATH_KEYS = ("path", "local_path_port", "listener_port", "protocol")


def _kind_of(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class _Problems:
    def __init__(self, path: str) -> None:
        self.path = path
        self.items: list[Problem] = []

    def add(self, field: str, message: str, fix: str) -> None:
        where = f"{self.path}.{field}" if self.path else field
        self.items.append(Problem(where, message, fix))


def entry_from_fields(
    kind: str,
    name: str,
    fields: Mapping[str, Any],
    *,
    path: str = "",
    source: str = "consul_config_entry",
) -> dict[str, Any]:
    """The normalised entry (Consul's CamelCase, as ``read_view`` returns it) or ModelError.

    ``fields`` holds the snake_case options; None means "not given". Every problem is
    reported at once, each naming ``path.field``.
    """
    p = _Problems(path)
    if kind not in KINDS:
        p.add("kind", f"unknown config entry kind {kind!r}", f"use one of {list(KINDS)}")
        raise ModelError(p.items, source)
    if kind == PROXY_DEFAULTS and name != "global":
        p.add(
            "name",
            f"a proxy-defaults entry must be named 'global', not {name!r}",
            "set name: global (there is one proxy-defaults entry per datacenter)",
        )
    elif not name:
        p.add("name", "the entry has no name", "set name to the service's name")
    allowed = FIELDS[kind]
    for key, value in fields.items():
        if value is not None and key not in allowed:
            other = SERVICE_DEFAULTS if kind == PROXY_DEFAULTS else PROXY_DEFAULTS
            fix = (
                "set protocol in config.protocol for every proxy, or per service with "
                "kind: service-defaults"
                if key == "protocol"
                else f"{key} belongs to {other} entries; remove it here"
            )
            p.add(key, f"{kind} entries have no {key}", fix)
    entry: dict[str, Any] = {"Kind": kind, "Name": name}
    if kind == PROXY_DEFAULTS:
        config = fields.get("config")
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            p.add("config", f"expected a mapping, got {_kind_of(config)}", "write key: value pairs")
            config = {}
        config = _plain(config)
        proto = config.get("protocol")
        if proto is not None and proto not in PROTOCOLS:
            p.add(
                "config.protocol",
                f"protocol {proto!r} is not one Consul's proxies speak",
                f"use one of {list(PROTOCOLS)}",
            )
        entry["Config"] = config
    else:
        proto = fields.get("protocol")
        if proto is None:
            proto = ""
        if proto not in PROTOCOLS and proto != "":
            p.add(
                "protocol",
                f"protocol {proto!r} is not one Consul's proxies speak",
                f"use one of {list(PROTOCOLS)}",
            )
        entry["Protocol"] = proto
        sni = fields.get("external_sni")
        if sni is not None and not isinstance(sni, str):
            p.add("external_sni", f"expected a string, got {_kind_of(sni)}", "quote the value")
            sni = None
        entry["ExternalSNI"] = sni or ""
    entry["MeshGateway"] = _mesh_gateway(p, fields.get("mesh_gateway"))
    entry["Expose"] = _expose(p, fields.get("expose"))
    if p.items:
        raise ModelError(p.items, source)
    return entry


def _mesh_gateway(p: _Problems, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        p.add("mesh_gateway", f"expected a mapping, got {_kind_of(value)}", "write mode: local")
        return {}
    for key in value:
        if key != "mode":
            p.add(f"mesh_gateway.{key}", f"unknown key {key!r}", "only mode is supported")
    mode = value.get("mode") or ""
    if mode not in MESH_GATEWAY_MODES:
        p.add("mesh_gateway.mode", f"unknown mode {mode!r}", "use none, local or remote")
        return {}
    return {"Mode": mode} if mode else {}


def _expose(p: _Problems, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        p.add("expose", f"expected a mapping, got {_kind_of(value)}", "write checks: true")
        return {}
    for key in value:
        if key not in _EXPOSE_KEYS:
            p.add(f"expose.{key}", f"unknown key {key!r}", f"use {list(_EXPOSE_KEYS)}")
    out: dict[str, Any] = {}
    checks = value.get("checks")
    if checks is not None and not isinstance(checks, bool):
        p.add("expose.checks", f"expected true or false, got {checks!r}", "write true or false")
    elif checks:
        out["Checks"] = True
    paths = value.get("paths") or []
    if not isinstance(paths, list):
        p.add("expose.paths", f"expected a list, got {_kind_of(paths)}", "write a YAML list")
        paths = []
    views = []
    for i, item in enumerate(paths):
        where = f"expose.paths[{i}]"
        if not isinstance(item, Mapping):
            p.add(where, f"expected a mapping, got {_kind_of(item)}", "write path: /metrics ...")
            continue
        for key in item:
            if key not in _PATH_KEYS:
                p.add(f"{where}.{key}", f"unknown key {key!r}", f"use {list(_PATH_KEYS)}")
        path = item.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            p.add(f"{where}.path", f"{path!r} is not an HTTP path", "write e.g. /metrics")
        ports = {}
        for key in ("local_path_port", "listener_port"):
            port = item.get(key)
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                p.add(f"{where}.{key}", f"{port!r} is not a port number", "use 1-65535")
            ports[key] = port
        proto = item.get("protocol") or "http"
        if proto not in EXPOSE_PROTOCOLS:
            p.add(f"{where}.protocol", f"unknown protocol {proto!r}", "use http or http2")
        views.append(
            {
                "Path": path,
                "LocalPathPort": ports["local_path_port"],
                "ListenerPort": ports["listener_port"],
                "Protocol": proto,
            }
        )
    if views:
        out["Paths"] = views
    return out


def read_view(entry: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """An entry as Consul returns it, reduced to what ``entry_from_fields`` builds.

    Consul answers ``"MeshGateway": {}``, ``"Expose": {}`` and leaves out empty fields; the
    view fills the same defaults on both sides so that an unchanged entry compares equal.
    """
    if not isinstance(entry, Mapping):
        return None
    kind = str(entry.get("Kind") or "")
    view: dict[str, Any] = {"Kind": kind, "Name": str(entry.get("Name") or "")}
    if kind == PROXY_DEFAULTS:
        view["Config"] = _plain(entry.get("Config") or {})
    else:
        view["Protocol"] = str(entry.get("Protocol") or "")
        view["ExternalSNI"] = str(entry.get("ExternalSNI") or "")
    mode = (entry.get("MeshGateway") or {}).get("Mode") or ""
    view["MeshGateway"] = {"Mode": mode} if mode else {}
    expose = entry.get("Expose") or {}
    exp: dict[str, Any] = {}
    if expose.get("Checks"):
        exp["Checks"] = True
    paths = [
        {
            "Path": x.get("Path"),
            "LocalPathPort": x.get("LocalPathPort"),
            "ListenerPort": x.get("ListenerPort"),
            "Protocol": x.get("Protocol") or "http",
        }
        for x in expose.get("Paths") or []
    ]
    if paths:
        exp["Paths"] = paths
    view["Expose"] = exp
    return view


def write_body(view: Mapping[str, Any]) -> dict[str, Any]:
    """The body for ``PUT /v1/config``: empty fields left out, as Consul 1.7 decodes them
    (``ExternalSNI`` only exists from 1.8 on, so sending it empty would be refused there)."""
    return {k: v for k, v in view.items() if v not in ("", {}, None) or k in ("Kind", "Name")}


class DefaultsEntryStore:
    """One ``proxy-defaults`` or ``service-defaults`` entry, written with check-and-set.

    Every write and delete expects the ``ModifyIndex`` this store read (or ``cas`` when the
    user gives one), so a change someone else made in between is refused, never overwritten.
    """

    def __init__(self, client: ConsulClient, kind: str, name: str, cas: int | None) -> None:
        self.client, self.kind, self.name, self.cas = client, kind, name, cas
        self.path = f"/v1/config/{segment(kind)}/{segment(name)}"
        self.index = 0

    def read(self) -> dict[str, Any] | None:
        raw = self.client.get(self.path, missing_ok=True)
        self.index = int(raw.get("ModifyIndex") or 0) if isinstance(raw, dict) else 0
        return read_view(raw)

    def write(self, view: dict[str, Any]) -> None:
        expected = self._expected_index()
        ok = self.client.put("/v1/config", write_body(view), query={"cas": str(expected)})
        if ok is False:
            raise self.refused("PUT", self._current_index())

    def delete(self) -> None:
        now = self._current_index()
        if now != self._expected_index():
            raise self.refused("DELETE", now)
        self.client.delete(self.path, query={"cas": str(now)})

    def predicted_refusal(self) -> ConsulError | None:
        """The refusal a write would meet, known without writing (for check mode): a ``cas``
        the user gave that is not the index just read."""
        if self.cas is not None and self.cas != self.index:
            return self.refused("PUT", self.index)
        return None

    def refused(self, method: str, now: int) -> ConsulError:
        return ConsulError(
            method,
            self.path,
            409,
            f"{self.kind} {self.name!r} was changed by someone else: check-and-set expected "
            f"ModifyIndex {self._expected_index()}, the entry is now at {now or 'absent'}. "
            "Nothing was written; re-run to compare against the current entry"
            + (" (and update cas)" if self.cas is not None else ""),
        )

    def _expected_index(self) -> int:
        return self.index if self.cas is None else self.cas

    def _current_index(self) -> int:
        raw = self.client.get(self.path, missing_ok=True)
        return int(raw.get("ModifyIndex") or 0) if isinstance(raw, dict) else 0
