# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)
"""Older proxy forms of Consul's service definitions, converted to the modern ones.

The one converter for every reader (the dev agent's ``-config-dir``, ``meshkit render
--consul``, the mesh model's services): each conversion comes with a deprecation warning that
names the file/field and the modern spelling, and a form meshkit cannot honour is refused
with the fix. Forms, as Consul's documentation of 1.2-1.7 shows them:

- 1.2-1.3 ``proxy_destination`` on a ``connect-proxy`` service
  -> ``proxy.destination_service_name``;
- managed proxies ``connect.proxy`` (removed in Consul 1.6), with ``config.upstreams`` (1.2,
  ``destination_datacenter`` -> ``datacenter``, ``connect_timeout_ms`` -> the upstream's
  ``config.connect_timeout_ms``) or ``upstreams`` one level up (1.3)
  -> an unmanaged ``connect.sidecar_service`` whose proxy runs under systemd as meshkit-proxy
  (``unit_command``); ``exec_mode`` other than daemon or a ``command`` other than the default
  proxy is refused with the fix;
- a standalone ``connect-proxy`` service with ``proxy.destination_service_id``,
  ``local_service_address``, ``local_service_port`` and ``upstreams[].destination_type:
  prepared_query``: already a current form; read in snake_case or CamelCase alike.

Keys are matched in any letter case (Consul's decoder does the same); the output keeps the
definition's style (snake_case for config files, CamelCase for API bodies).

Runs on managed hosts and in the dev agent: Python 3.8 syntax at run time, stdlib only.
"""

from __future__ import annotations

import copy
import re
from typing import Any

# The commands Consul ran for a managed proxy by default; meshkit-proxy replaces them.
DEFAULT_COMMANDS = (
    (),
    ("consul", "connect", "proxy"),
    ("meshkit-proxy",),
)


class LegacyError(ValueError):
    """A legacy form meshkit cannot convert; the message names the field and the fix."""


def _norm(key: str) -> str:
    return key.replace("_", "").lower()


def _find(obj: dict[str, Any], *names: str) -> str | None:
    """The key of ``obj`` matching one of ``names`` in any case and underscore style."""
    wanted = {_norm(n) for n in names}
    for key in obj:
        if isinstance(key, str) and _norm(key) in wanted:
            return key
    return None


def _pop(obj: dict[str, Any], *names: str) -> Any:
    key = _find(obj, *names)
    return obj.pop(key) if key is not None else None


def _camel(obj: dict[str, Any]) -> bool:
    """True when the definition is written in CamelCase (API style)."""
    return any(isinstance(k, str) and k[:1].isupper() for k in obj)


_SNAKE_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake(key: str) -> str:
    """``DestinationServiceID`` -> ``destination_service_id``, ``TLSSkipVerify`` ->
    ``tls_skip_verify``; snake_case stays as it is."""
    return _SNAKE_RE.sub("_", key).lower()


def _key(name: str, camel: bool) -> str:
    """``destination_service_name`` in the definition's style."""
    if not camel:
        return name
    special = {"external_sni": "ExternalSNI"}
    if name in special:
        return special[name]
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _child(obj: dict[str, Any], name: str, camel: bool) -> dict[str, Any]:
    key = _find(obj, name)
    if key is None:
        key = _key(name, camel)
        obj[key] = {}
    value = obj[key]
    if not isinstance(value, dict):
        raise LegacyError(f"{name} must be an object")
    return value


def convert(
    definition: dict[str, Any], where: str, service_id: str | None = None
) -> tuple[dict[str, Any], list[str], list[str] | None]:
    """Convert one service definition; return (modern definition, warnings, unit_command).

    ``where`` names the file and the service (``/etc/consul.d/web.json: service``) in every
    warning and error. ``unit_command`` is the meshkit-proxy command line of a converted
    managed proxy (None when there was none).
    """
    out = copy.deepcopy(definition)
    camel = _camel(out)
    warnings: list[str] = []
    unit_command: list[str] | None = None

    dest = _pop(out, "proxy_destination")
    if dest is not None:
        modern = f"{_key('proxy', camel)}.{_key('destination_service_name', camel)}"
        dest_proxy = _child(out, "proxy", camel)
        have_key = _find(dest_proxy, "destination_service_name")
        have = dest_proxy.get(have_key) if have_key else None
        if have and have != dest:
            raise LegacyError(
                f"{where}.proxy_destination {dest!r} contradicts {modern} {have!r}; "
                f"remove proxy_destination (deprecated since Consul 1.3)"
            )
        dest_proxy[have_key or _key("destination_service_name", camel)] = dest
        warnings.append(
            f"{where}.proxy_destination is deprecated (Consul 1.2-1.3); write "
            f"{modern}: {dest!r} instead"
        )

    connect_key = _find(out, "connect")
    connect = out.get(connect_key) if connect_key else None
    if isinstance(connect, dict) and _find(connect, "proxy") is not None:
        managed = connect.pop(_find(connect, "proxy") or "")
        cwhere = f"{where}.connect.proxy"
        if managed is None:
            managed = {}
        if not isinstance(managed, dict):
            raise LegacyError(f"{cwhere} must be an object")
        unit_command = _command(managed, cwhere, service_id or _service_id(out))
        sidecar_key = _find(connect, "sidecar_service")
        if sidecar_key is not None and connect[sidecar_key]:
            raise LegacyError(
                f"{cwhere} (a managed proxy) and connect.sidecar_service are both set; keep "
                "sidecar_service and move the managed proxy's upstreams and config into it"
            )
        sidecar: dict[str, Any] = {}
        proxy: dict[str, Any] = {}
        config = _pop(managed, "config")
        if config is not None and not isinstance(config, dict):
            raise LegacyError(f"{cwhere}.config must be an object")
        config = dict(config or {})
        upstreams: list[dict[str, Any]] = []
        inner = _pop(config, "upstreams")
        if inner:
            upstreams += _upstreams(inner, f"{cwhere}.config.upstreams", camel, True)
            warnings.append(
                f"{cwhere}.config.upstreams is deprecated (Consul 1.2); write "
                f"connect.sidecar_service.proxy.upstreams instead (destination_datacenter -> "
                f"datacenter)"
            )
        outer = _pop(managed, "upstreams")
        if outer:
            upstreams += _upstreams(outer, f"{cwhere}.upstreams", camel, False)
        if config:
            proxy[_key("config", camel)] = config
        if upstreams:
            proxy[_key("upstreams", camel)] = upstreams
        for key in list(managed):
            raise LegacyError(f"{cwhere}.{key} has no equivalent in a sidecar_service; remove it")
        if proxy:
            sidecar[_key("proxy", camel)] = proxy
        connect[sidecar_key or _key("sidecar_service", camel)] = sidecar
        warnings.append(
            f"{cwhere} (a managed proxy) is deprecated since Consul 1.3 and removed in 1.6; "
            f"converted to connect.sidecar_service, whose proxy runs under systemd as "
            f"{' '.join(unit_command)} (write connect.sidecar_service instead)"
        )
    return out, warnings, unit_command


def _service_id(definition: dict[str, Any]) -> str:
    key = _find(definition, "id") or _find(definition, "name")
    return str(definition.get(key) or "") if key else ""


def _command(managed: dict[str, Any], where: str, service_id: str) -> list[str]:
    mode = _pop(managed, "exec_mode")
    if mode not in (None, "", "daemon"):
        raise LegacyError(
            f"{where}.exec_mode {mode!r} cannot be converted: meshkit-proxy runs as a systemd "
            "service (daemon); remove exec_mode"
        )
    command = _pop(managed, "command")
    if command is None:
        command = []
    if isinstance(command, str):
        command = command.split()
    if not isinstance(command, list) or not all(isinstance(c, str) for c in command):
        raise LegacyError(f"{where}.command must be a list of strings")
    base = tuple(c.rsplit("/", 1)[-1] for c in command[:3])
    if base not in DEFAULT_COMMANDS and base[:1] != ("meshkit-proxy",):
        raise LegacyError(
            f"{where}.command {command!r} is not the default proxy: meshkit runs meshkit-proxy "
            "under systemd (roles/mesh_proxy) for a converted managed proxy. Remove command "
            "(and exec_mode) to use meshkit-proxy, or register a connect.sidecar_service and "
            "run your proxy yourself"
        )
    return ["meshkit-proxy", "-sidecar-for", service_id]


def _upstreams(value: Any, where: str, camel: bool, from_config: bool) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise LegacyError(f"{where} must be a list")
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(value):
        if not isinstance(raw, dict):
            raise LegacyError(f"{where}[{i}] must be an object")
        up = dict(raw)
        dc = _pop(up, "destination_datacenter")
        if dc:
            up[_find(up, "datacenter") or _key("datacenter", camel)] = dc
        timeout = _pop(up, "connect_timeout_ms") if from_config else None
        if timeout is not None:
            cfg_key = _find(up, "config") or _key("config", camel)
            cfg = dict(up.get(cfg_key) or {})
            cfg["connect_timeout_ms"] = timeout
            up[cfg_key] = cfg
        out.append(_restyle(up, camel))
    return out


def _restyle(up: dict[str, Any], camel: bool) -> dict[str, Any]:
    """An upstream's own keys in the definition's style (its ``config`` stays opaque)."""
    out: dict[str, Any] = {}
    for key, value in up.items():
        out[_key(snake(str(key)), camel)] = value
    return out
