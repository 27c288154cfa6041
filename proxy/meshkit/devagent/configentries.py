"""`/v1/config`: service-intentions (a view of the intentions store) plus stored defaults.

Writes honour `?cas=<ModifyIndex>` as Consul does: 0 means "only if absent", a mismatch
answers `false` and changes nothing, so concurrent writers can retry safely.
"""

from __future__ import annotations

from typing import Any

from meshkit.devagent.catalog import BadRequest, NotFound
from meshkit.devagent.intentions import Intentions
from meshkit.devagent.store import Store

DEFAULTS_KINDS = ("service-defaults", "proxy-defaults")
_DEFAULTS_KEYS = {
    "Kind", "Name", "Protocol", "Config", "MeshGateway", "Expose", "ExternalSNI", "Meta",
    "TransparentProxy", "Mode", "CreateIndex", "ModifyIndex",
}  # fmt: skip


class ConfigEntries:
    def __init__(self, store: Store, intentions: Intentions) -> None:
        self.store = store
        self.intentions = intentions
        self.items: dict[str, dict[str, Any]] = store.items("config_entries")

    def index(self, kind: str) -> int:
        if kind == "service-intentions":
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
        body = {
            ("Kind" if k.lower() == "kind" else "Name" if k.lower() == "name" else k): v
            for k, v in raw.items()
        }
        kind, name = str(body.get("Kind") or ""), str(body.get("Name") or "")
        if kind not in ("service-intentions", *DEFAULTS_KINDS):
            raise BadRequest(
                f"invalid config entry kind: {kind!r} (meshkit dev-agent supports "
                "service-intentions, service-defaults, proxy-defaults)"
            )
        if not name:
            raise BadRequest("invalid config entry: Name is required")
        if not self._cas_ok(self._current(kind, name), cas):
            return False
        if kind == "service-intentions":
            self.intentions.put_entry(body)
            return True
        if kind == "proxy-defaults" and name != "global":
            raise BadRequest('invalid config entry: proxy-defaults Name must be "global"')
        for key in body:
            if key not in _DEFAULTS_KEYS:
                raise BadRequest(f'Request decode failed: json: unknown field "{key}"')
        old = self.items.get(f"{kind}/{name}")
        index = self.store.index + 1
        entry = {**body, "CreateIndex": old["CreateIndex"] if old else index, "ModifyIndex": index}
        self.items[f"{kind}/{name}"] = entry
        self.store.put("config_entries", f"{kind}/{name}", entry)
        self.store.bump("config")
        return True

    def get(self, kind: str, name: str) -> dict[str, Any]:
        if kind == "service-intentions":
            return self.intentions.entry(name)
        entry = self.items.get(f"{kind}/{name}")
        if entry is None:
            raise NotFound(f'Config entry not found for "{kind}" / "{name}"')
        return entry

    def listing(self, kind: str) -> list[dict[str, Any]]:
        if kind == "service-intentions":
            return self.intentions.entries()
        return [v for k, v in sorted(self.items.items()) if k.startswith(kind + "/")]

    def delete(self, kind: str, name: str, cas: int | None) -> bool:
        current = self._current(kind, name)
        if not self._cas_ok(current, cas):
            return False
        if kind == "service-intentions":
            self.intentions.delete_entry(name)
        elif self.items.pop(f"{kind}/{name}", None) is not None:
            self.store.delete("config_entries", f"{kind}/{name}")
            self.store.bump("config")
        return True
