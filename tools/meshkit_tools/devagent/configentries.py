# SPDX-License-Identifier: MPL-2.0
"""`/v1/config`: `proxy-defaults` and `service-defaults` as Consul 1.7.14 stores them, plus
`service-intentions` (a view of the intentions store, a later Consul's kind kept for our tools).

What Consul 1.7 does, and so what this does (recorded in consul-1.7.14-edges e12-e30):
- a `proxy-defaults` entry is always named `global`: any other name is accepted with `true`
  and overwrites `global` (Consul's Normalize renames before Validate looks);
- a `service-defaults` Protocol is lowercased and never validated (`carrier-pigeon` is stored);
- an unknown kind is `Bad request: Request decoding failed: invalid config entry kind: <k>`;
- both kinds always render `MeshGateway` and `Expose` (as `{}` when unset);
- writes honour `?cas=<ModifyIndex>` (0 = "only if absent"); a mismatch answers `false`;
- a delete answers `{}` and ignores `cas` (1.7 has no check-and-set delete).

`on_change` runs after every stored change, so registered proxies pick up the new defaults.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from meshkit_tools.devagent.catalog import BadRequest, NotFound
from meshkit_tools.devagent.intentions import Intentions
from meshkit_tools.devagent.store import Store

PROXY_DEFAULTS, SERVICE_DEFAULTS, SERVICE_INTENTIONS = (
    "proxy-defaults",
    "service-defaults",
    "service-intentions",
)
DEFAULTS_KINDS = (SERVICE_DEFAULTS, PROXY_DEFAULTS)
GLOBAL = "global"
# Valid in Consul 1.7 but not modelled here: refused with a message that says so.
UNSUPPORTED_KINDS = ("service-router", "service-splitter", "service-resolver")
KNOWN_KINDS = (*DEFAULTS_KINDS, SERVICE_INTENTIONS, *UNSUPPORTED_KINDS)

# Field sets per kind: canonical name -> JSON type. Keys match in any letter case (mapstructure)
# or by their snake_case alias. ExternalSNI and the later fields are accepted so the tools built
# for newer Consul keep working; they render only when set.
_FIELDS: dict[str, dict[str, type]] = {
    SERVICE_DEFAULTS: {
        "Protocol": str,
        "MeshGateway": dict,
        "Expose": dict,
        "ExternalSNI": str,
        "Meta": dict,
        "Mode": str,
        "TransparentProxy": dict,
    },
    PROXY_DEFAULTS: {
        "Config": dict,
        "MeshGateway": dict,
        "Expose": dict,
        "Meta": dict,
        "Mode": str,
        "TransparentProxy": dict,
    },
}
_ALIASES = {"mesh_gateway": "MeshGateway", "external_sni": "ExternalSNI"}
_IGNORED = ("kind", "name", "createindex", "modifyindex")
_JSON_NAMES: dict[type, str] = {str: "string", dict: "map[string]interface {}"}


def _bad(reason: str) -> BadRequest:
    """Consul's config endpoint wraps every decoding failure the same way."""
    return BadRequest(f"Bad request: Request decoding failed: {reason}")


def _kind_of(raw: dict[str, Any]) -> str:
    value = raw["Kind"] if "Kind" in raw else raw.get("kind")
    if value is None and "Kind" not in raw and "kind" not in raw:
        raise _bad("Payload does not contain a kind/Kind key at the top level")
    if not isinstance(value, str):
        raise _bad("Kind value in payload is not a string")
    if value not in KNOWN_KINDS:
        raise _bad(f"invalid config entry kind: {value}")
    if value in UNSUPPORTED_KINDS:
        raise _bad(
            f"config entry kind {value} is valid in Consul 1.7 but not supported by meshkit "
            "dev-agent (it supports proxy-defaults, service-defaults, service-intentions)"
        )
    return value


def decode_defaults(kind: str, raw: dict[str, Any]) -> dict[str, Any]:
    """A `proxy-defaults`/`service-defaults` body in canonical keys, normalised as Consul does."""
    fields = _FIELDS[kind]
    by_lower = {k.lower(): k for k in fields}
    out: dict[str, Any] = {}
    unknown: list[str] = []
    name = raw["Name"] if "Name" in raw else raw.get("name", "")
    if not isinstance(name, str):
        raise _bad("1 error(s) decoding:\n\n* 'Name' expected type 'string'")
    for key, value in raw.items():
        if key.lower() in _IGNORED:
            continue
        canonical = _ALIASES.get(key) or by_lower.get(key.lower())
        if canonical is None:
            unknown.append(key)
            continue
        want = fields[canonical]
        if value is not None and not isinstance(value, want):
            raise _bad(
                f"1 error(s) decoding:\n\n* '{canonical}' expected type "
                f"'{_JSON_NAMES[want]}', got {type(value).__name__}"
            )
        out[canonical] = value
    if unknown:
        lines = "".join(f'\t* invalid config key "{k}"\n' for k in unknown)
        count = f"{len(unknown)} error{'s' if len(unknown) > 1 else ''} occurred"
        raise _bad(f"{count}:\n{lines}\n")
    if kind == PROXY_DEFAULTS:
        name = GLOBAL  # Consul 1.7's Normalize: the only proxy-defaults entry is "global"
    elif not name:
        raise _bad("service-defaults needs a Name (the service it configures)")
    if kind == SERVICE_DEFAULTS:
        out["Protocol"] = str(out.get("Protocol") or "").lower()
    return {"Kind": kind, "Name": name, **out}


def render(entry: dict[str, Any]) -> dict[str, Any]:
    """Consul 1.7's JSON for an entry: MeshGateway and Expose always, later fields when set."""
    kind = entry["Kind"]
    out: dict[str, Any] = {"Kind": kind, "Name": entry["Name"]}
    if kind == SERVICE_DEFAULTS:
        out["Protocol"] = entry.get("Protocol") or ""
    else:
        out["Config"] = copy.deepcopy(entry.get("Config"))
    out["MeshGateway"] = dict(entry.get("MeshGateway") or {})
    out["Expose"] = dict(entry.get("Expose") or {})
    for key in ("ExternalSNI", "Meta", "Mode", "TransparentProxy"):
        if entry.get(key):
            out[key] = copy.deepcopy(entry[key])
    out["CreateIndex"] = entry["CreateIndex"]
    out["ModifyIndex"] = entry["ModifyIndex"]
    return out


class ConfigEntries:
    def __init__(self, store: Store, intentions: Intentions) -> None:
        self.store = store
        self.intentions = intentions
        self.items: dict[str, dict[str, Any]] = store.items("config_entries")
        self.on_change: Callable[[], object] = lambda: None

    def index(self, kind: str) -> int:
        if kind == SERVICE_INTENTIONS:
            return self.intentions.index()
        return self.store.table_index(("config",))

    def _current(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            return self.get(kind, name)
        except NotFound:
            return None

    @staticmethod
    def _cas_ok(current: dict[str, Any] | None, cas: int | None) -> bool:
        if cas is None:
            return True
        if cas == 0:
            return current is None
        return current is not None and int(current["ModifyIndex"]) == cas

    def put(self, raw: dict[str, Any], cas: int | None) -> bool:
        kind = _kind_of(raw)
        if kind == SERVICE_INTENTIONS:
            body = {
                ("Kind" if k.lower() == "kind" else "Name" if k.lower() == "name" else k): v
                for k, v in raw.items()
            }
            name = str(body.get("Name") or "")
            if not name:
                raise BadRequest("invalid config entry: Name is required")
            if not self._cas_ok(self._current(kind, name), cas):
                return False
            self.intentions.put_entry(body)
            return True
        entry = decode_defaults(kind, raw)
        key = f"{kind}/{entry['Name']}"
        old = self.items.get(key)
        if not self._cas_ok(old, cas):
            return False
        index = self.store.index + 1
        entry["CreateIndex"] = old["CreateIndex"] if old else index
        entry["ModifyIndex"] = index
        self.items[key] = entry
        self.store.put("config_entries", key, entry)
        self.store.bump("config")
        self.on_change()
        return True

    def get(self, kind: str, name: str) -> dict[str, Any]:
        if kind == SERVICE_INTENTIONS:
            return self.intentions.entry(name)
        entry = self.items.get(f"{kind}/{name}")
        if entry is None:
            raise NotFound(f'Config entry not found for "{kind}" / "{name}"')
        return render(entry)

    def raw(self, kind: str, name: str) -> dict[str, Any] | None:
        """The stored entry (canonical keys) or None; for the central-config resolver."""
        return self.items.get(f"{kind}/{name}")

    def listing(self, kind: str) -> list[dict[str, Any]]:
        if kind == SERVICE_INTENTIONS:
            return self.intentions.entries()
        return [render(v) for k, v in sorted(self.items.items()) if k.startswith(kind + "/")]

    def delete(self, kind: str, name: str, cas: int | None) -> dict[str, Any] | bool:
        """The answer body: Consul 1.7 deletes unconditionally and answers `{}` (edges e29).
        `cas` is honoured only for service-intentions (a later Consul's kind, whose
        check-and-set delete answers `true`/`false` and which our intention tools use)."""
        if kind == SERVICE_INTENTIONS:
            if not self._cas_ok(self._current(kind, name), cas):
                return False
            self.intentions.delete_entry(name)
            return True if cas is not None else {}
        if kind == PROXY_DEFAULTS:
            name = GLOBAL
        if self.items.pop(f"{kind}/{name}", None) is not None:
            self.store.delete("config_entries", f"{kind}/{name}")
            self.store.bump("config")
            self.on_change()
        return {}
