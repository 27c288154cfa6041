# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)
"""Older Consul proxy forms written into the mesh model's ``services``, turned into the model's
own shape (a service with a ``sidecar``) before the model is parsed.

Operators migrating a Consul 1.2-1.5 setup paste service definitions into the inventory; each
form is converted by ``consul_legacy.convert`` (the one converter, which also warns) and then
mapped onto the model:

- a managed proxy (``connect.proxy``, upstreams in ``config`` or one level up) -> ``sidecar``
  with those ``upstreams`` and ``config``; the proxy runs as meshkit-proxy under systemd
  (roles/mesh_proxy), as every model sidecar does;
- a ``connect-proxy`` service (``proxy_destination`` of 1.2-1.3, or the standalone form with
  ``proxy.destination_service_name``/``_id``, ``local_service_address``/``_port``) -> its
  destination service with that proxy as ``sidecar`` (the service's ``port`` is the proxy's
  ``local_service_port``; the sidecar's ``port`` is the proxy's port). Register it with
  ``consul_service`` ``registration: standalone_proxy`` to keep a separate proxy service.

Runs on managed hosts: Python 3.8 syntax at run time, stdlib only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible_collections.meshkit.connect.plugins.module_utils.consul_legacy import (
    LegacyError,
    convert,
)
from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import plain


class LegacyProblems(ValueError):
    """Legacy entries that cannot be converted: ``problems`` holds (path, message) pairs;
    ``parse_mesh`` reports them with the model's other problems."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))
        self.problems = problems


_LEGACY_KEYS = ("proxy_destination", "kind", "proxy")
# `connect` is the model's own key for `{native: true}`; only these inside it are Consul's forms.
_LEGACY_CONNECT_KEYS = ("proxy", "sidecar_service")


def _is_legacy(svc: Any) -> bool:
    if not isinstance(svc, Mapping):
        return False
    connect = svc.get("connect")
    if isinstance(connect, Mapping) and any(k in connect for k in _LEGACY_CONNECT_KEYS):
        return True
    return any(k in svc for k in _LEGACY_KEYS)


_UPSTREAM_KEYS = (
    "destination_name", "destination_type", "datacenter", "local_bind_address",
    "local_bind_port", "config",
)  # fmt: skip


def modernize_model(
    data: Mapping[str, Any], source: str = "vars"
) -> tuple[Mapping[str, Any], list[str]]:
    """``data`` with every legacy service entry converted, and the deprecation warnings."""
    key = "services" if "services" in data else "meshkit_services"
    services = data.get(key)
    if not isinstance(services, list) or not any(_is_legacy(s) for s in services):
        return data, []
    warnings: list[str] = []
    problems: list[tuple[str, str]] = []
    out: list[Any] = []
    for i, svc in enumerate(services):
        if not _is_legacy(svc):
            out.append(svc)
            continue
        path = f"{key}[{i}] ({svc.get('name', '')})"
        try:
            converted, notes, _command = convert(plain(svc), f"{source}: {path}")
            model = _to_model(converted, path)
            out.append(model)
            warnings += notes
            if converted.get("kind") == "connect-proxy":
                warnings.append(
                    f"{source}: {path} (a connect-proxy service) converted to service "
                    f"{model['name']!r} with this proxy as its sidecar; write it that way"
                )
        except LegacyError as err:
            problems.append((path, str(err)))
    if problems:
        raise LegacyProblems(problems)
    merged = dict(data)
    merged[key] = out
    return merged, warnings


def _to_model(svc: dict[str, Any], path: str) -> dict[str, Any]:
    if svc.get("kind") == "connect-proxy":
        return _standalone(svc, path)
    if "kind" in svc:
        raise LegacyError(f"{path}.kind {svc['kind']!r}: the mesh model describes services")
    connect = svc.pop("connect", None) or {}
    sidecar_def = connect.pop("sidecar_service", None)
    if connect:
        raise LegacyError(f"{path}.connect.{sorted(connect)[0]} has no place in the mesh model")
    if sidecar_def is not None:
        if "sidecar" in svc:
            raise LegacyError(f"{path}: both a managed proxy (connect.proxy) and sidecar")
        proxy = sidecar_def.get("proxy") or {}
        sidecar: dict[str, Any] = {}
        if proxy.get("config"):
            sidecar["config"] = proxy["config"]
        if proxy.get("upstreams"):
            sidecar["upstreams"] = [_upstream(u) for u in proxy["upstreams"]]
        svc["sidecar"] = sidecar
    return svc


def _upstream(up: dict[str, Any]) -> dict[str, Any]:
    return {k: up[k] for k in _UPSTREAM_KEYS if up.get(k) not in (None, "")}


def _standalone(svc: dict[str, Any], path: str) -> dict[str, Any]:
    proxy = svc.get("proxy") or {}
    dest = proxy.get("destination_service_name")
    if not dest:
        raise LegacyError(f"{path}: a connect-proxy without proxy.destination_service_name")
    local_port = proxy.get("local_service_port")
    if not local_port:
        raise LegacyError(
            f"{path}.proxy.local_service_port is missing: the mesh model needs the port of "
            f"{dest!r} to describe it with its sidecar"
        )
    model: dict[str, Any] = {"name": dest, "port": local_port}
    if proxy.get("destination_service_id"):
        model["id"] = proxy["destination_service_id"]
    if proxy.get("local_service_address"):
        model["address"] = proxy["local_service_address"]
    sidecar: dict[str, Any] = {}
    if svc.get("port"):
        sidecar["port"] = svc["port"]
    if proxy.get("config"):
        sidecar["config"] = proxy["config"]
    if proxy.get("upstreams"):
        sidecar["upstreams"] = [_upstream(u) for u in proxy["upstreams"]]
    model["sidecar"] = sidecar
    return model
