# SPDX-License-Identifier: MPL-2.0
"""`-config-dir`: service definitions from `*.json` files, decoded the way Consul does.

Keys are snake_case (any letter case); a file holds `service` (one object) or `services`
(a list). A key that matches nothing refuses the whole load with Consul's
`invalid config key` wording, naming the file, so a reload never half-applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshkit import bounded
from meshkit_tools.devagent.catalog import BadRequest
from meshkit_tools.devagent.decode import SERVICE, DecodeError, decode
from meshkit_tools.devagent.legacy import LegacyFormError, modernize
from meshkit_tools.devagent.state import SERVICE_TABLES, State


class ConfigError(ValueError):
    """A config file that Consul would refuse to load."""


@dataclass(frozen=True)
class Definition:
    file: Path
    service: dict[str, Any]


def load(dirs: list[Path]) -> list[Definition]:
    out: list[Definition] = []
    for d in dirs:
        if not d.is_dir():
            raise ConfigError(f"{d}: -config-dir is not a directory")
        for path in sorted(d.glob("*.json")):
            out += load_file(path)
    return out


def load_file(path: Path) -> list[Definition]:
    try:
        data = bounded.load_json(path)
    except bounded.FileError as exc:
        raise ConfigError(f"Error parsing {exc.path}: {exc.problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Error parsing {path}: top level must be a JSON object")
    out: list[Definition] = []
    for key, value in data.items():
        low = key.lower()
        try:
            if low == "service":
                items = value if isinstance(value, list) else [value]
                out += [
                    Definition(path, _service(modernize(v, f"{path}: {key}"), key)) for v in items
                ]
            elif low == "services":
                if not isinstance(value, list):
                    raise ConfigError(f"Error loading {path}: services: expected a list")
                out += [
                    Definition(path, _service(modernize(v, f"{path}: {key}[{i}]"), f"{key}[{i}]"))
                    for i, v in enumerate(value)
                ]
            else:
                raise ConfigError(
                    f"Error loading {path}: invalid config key {key} "
                    "(meshkit dev-agent reads only service and services from -config-dir)"
                )
        except DecodeError as exc:
            raise ConfigError(f"Error loading {path}: {exc}") from None
        except LegacyFormError as exc:
            raise ConfigError(f"Error loading {exc}") from None
    return out


def _service(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DecodeError(f"{where}: expected an object")
    try:
        return decode(value, SERVICE, "file", where)
    except DecodeError as exc:
        text = str(exc)
        raise DecodeError(text) from None


def apply(state: State, defs: list[Definition]) -> None:
    """Replace the config-sourced services with `defs`, validating everything first."""
    for d in defs:
        try:
            state.build(d.service, d.service.get("Token") or "", "config")
        except BadRequest as exc:
            raise ConfigError(
                f"Error loading {d.file}: service {d.service.get('Name')!r}: {exc}"
            ) from None
    wanted_ids: set[str] = set()
    for d in defs:
        sid = d.service.get("ID") or d.service.get("Name") or ""
        wanted_ids.add(sid)
    for svc in list(state.services.values()):
        if svc.source == "config" and not svc.sidecar_parent and svc.id not in wanted_ids:
            state.deregister(svc.id)
    for d in defs:
        regs = state.build(d.service, d.service.get("Token") or "", "config")
        state.apply(regs, replace_checks=True)
    state.store.bump(*SERVICE_TABLES)
