# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)
"""The mesh model's central proxy configuration: ``proxy_defaults`` and per-service ``defaults``.

Kept apart from ``mesh_model.parse_mesh`` (which only lets the two keys through) so the
config entries have one reader, shared with ``consul_config_entry``
(``consul_config_entries.entry_from_fields``): the model and the module refuse the same input
with the same words. The result is the list of entries to write, in the order the roles apply
them: ``proxy-defaults`` first, then each service's ``service-defaults``, all before the
services are registered (Consul merges them in at registration).

Runs on managed hosts: Python 3.8 syntax at run time, no ansible imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible_collections.meshkit.connect.plugins.module_utils.consul_config_entries import (
    PROXY_DEFAULTS,
    SERVICE_DEFAULTS,
    entry_from_fields,
)
from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import (
    ModelError,
    Problem,
)

PROXY_DEFAULTS_KEYS = ("config", "mesh_gateway", "expose")
SERVICE_DEFAULTS_KEYS = ("protocol", "mesh_gateway", "expose", "external_sni")
# The module's option names, in the order the entry's fields are listed.
_OPTION_KEYS = ("config", "protocol", "mesh_gateway", "expose", "external_sni")


def _top(data: Mapping[str, Any], key: str) -> Any:
    return data.get(key, data.get(f"meshkit_{key}"))


def _read(
    value: Any, path: str, allowed: tuple[str, ...], problems: list[Problem]
) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        problems.append(Problem(path, "expected a mapping", "write key: value pairs"))
        return None
    fields: dict[str, Any] = {}
    for key, item in value.items():
        if key not in allowed:
            fix = f"use {list(allowed)}"
            if key == "protocol" and "config" in allowed:
                fix = "set config.protocol here, or protocol in a service's defaults"
            elif key == "config":
                fix = "per-service Config goes in the service's sidecar.config"
            problems.append(Problem(f"{path}.{key}", f"unknown key {key!r}", fix))
        else:
            fields[str(key)] = item
    return fields


def config_entries(data: Mapping[str, Any], *, source: str = "vars") -> list[dict[str, Any]]:
    """The entries the model asks for, as ``consul_config_entry`` options, or ModelError.

    ``data`` holds ``proxy_defaults`` and ``services`` (the ``meshkit_`` prefix is accepted);
    every problem of every entry is reported at once.
    """
    problems: list[Problem] = []
    out: list[dict[str, Any]] = []
    fields = _read(_top(data, "proxy_defaults"), "proxy_defaults", PROXY_DEFAULTS_KEYS, problems)
    if fields:
        out.append(_entry(PROXY_DEFAULTS, "global", fields, "proxy_defaults", problems))
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    services = _top(data, "services") or []
    for i, svc in enumerate(services if isinstance(services, list) else []):
        if not isinstance(svc, Mapping) or svc.get("defaults") is None:
            continue
        name = str(svc.get("name") or "")
        path = f"services[{i}] ({name}).defaults"
        fields = _read(svc.get("defaults"), path, SERVICE_DEFAULTS_KEYS, problems)
        if fields is None:
            continue
        entry = _entry(SERVICE_DEFAULTS, name, fields, path, problems)
        if name in seen and seen[name][1] != entry:
            problems.append(
                Problem(
                    path,
                    f"service {name!r} has other defaults at {seen[name][0]}",
                    "give every instance of a service the same defaults (one entry per name)",
                )
            )
        elif name not in seen:
            seen[name] = (path, entry)
            out.append(entry)
    if problems:
        raise ModelError(problems, source)
    return out


def _entry(
    kind: str, name: str, fields: dict[str, Any], path: str, problems: list[Problem]
) -> dict[str, Any]:
    """One entry as module options (kind, name and the fields given), checked by the reader
    the module uses; problems are collected, not raised, so all are reported together."""
    try:
        entry_from_fields(kind, name, fields, path=path)
    except ModelError as err:
        problems.extend(err.problems)
    options: dict[str, Any] = {"kind": kind, "name": name}
    options.update({k: fields[k] for k in _OPTION_KEYS if fields.get(k) is not None})
    return options
