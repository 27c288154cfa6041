# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)
"""Tell a sidecar's own ``Config`` from what central configuration merged into it.

With ``enable_central_service_config`` the agent answers ``/v1/agent/service/<sidecar>`` with
``proxy-defaults`` Config and ``service-defaults`` Protocol merged under the registration
(consul-1.7.14-edges e23-e27), and Consul 1.7 has no API for the registration as sent. Compared
as it is, every sidecar would look changed on every run once ``meshkit_proxy_defaults`` is set.
So the desired sidecar is merged the way Consul merges it (mergo without override: a key the
registration sets wins, nested maps merge key by key; an upstream of ``service`` type gets
``{"protocol": ...}`` from its destination's ``service-defaults``); when that equals what the
agent holds, the view takes the desired values back. Anything else is real drift and stays.
Entries that cannot be read (ACL) leave the view as read.

Runs on managed hosts: Python 3.8 syntax at run time.
"""

from __future__ import annotations

import copy
from typing import Any

from ansible_collections.meshkit.connect.plugins.module_utils.consul_api import (
    ConsulClient,
    ConsulError,
    segment,
)


def _entry(client: ConsulClient, kind: str, name: str) -> dict[str, Any] | None:
    raw = client.get(f"/v1/config/{kind}/{segment(name)}", missing_ok=True)
    return raw if isinstance(raw, dict) else None


def merge_map(registered: Any, defaults: Any) -> Any:
    """``mergo.Merge(&registered, defaults)`` for JSON maps: fill, never override."""
    if not isinstance(defaults, dict):
        return registered
    if registered is not None and not isinstance(registered, dict):
        return registered
    out = dict(registered or {})
    for key, value in defaults.items():
        if value is None:
            continue
        mine = out.get(key)
        if mine is None:
            out[key] = copy.deepcopy(value)
        elif isinstance(mine, dict) and isinstance(value, dict):
            out[key] = merge_map(mine, value)
    return out


def unmerge(client: ConsulClient, service: str, have: dict[str, Any], want: dict[str, Any]) -> None:
    """Give ``have`` (the read sidecar ``Proxy`` view) the desired ``Config`` of the proxy and
    of each upstream where Consul's merge of ``want`` explains the difference."""
    have_ups = have.get("Upstreams") or []
    want_ups = want.get("Upstreams") or []
    # index loops, not zip(strict=...): this runs on Python 3.8 hosts
    same_ups = len(have_ups) == len(want_ups) and all(
        have_ups[i].get("Config") == want_ups[i].get("Config") for i in range(len(want_ups))
    )
    if have.get("Config") == want.get("Config") and same_ups:
        return
    try:
        proxy_defaults = _entry(client, "proxy-defaults", "global")
        svc_defaults = _entry(client, "service-defaults", service)
        names = {str(u.get("DestinationName") or "") for u in want_ups}
        up_defaults = {n: _entry(client, "service-defaults", n) for n in sorted(names) if n}
    except ConsulError:
        return  # not readable with this token: compare as read
    config: dict[str, Any] | None = None
    global_protocol: Any = None
    if proxy_defaults is not None:
        config = copy.deepcopy(proxy_defaults.get("Config"))
        global_protocol = (proxy_defaults.get("Config") or {}).get("protocol")
    if svc_defaults is not None and svc_defaults.get("Protocol"):
        config = dict(config or {})
        config["protocol"] = svc_defaults["Protocol"]
    merged = merge_map(want.get("Config"), config) if config is not None else want.get("Config")
    if (merged or None) == (have.get("Config") or None):
        _set_config(have, want.get("Config"))
    if len(have_ups) != len(want_ups):
        return
    for i, w in enumerate(want_ups):
        h = have_ups[i]
        expected = w.get("Config")
        entry = up_defaults.get(str(w.get("DestinationName") or ""))
        if (w.get("DestinationType") or "service") == "service" and entry is not None:
            protocol = entry.get("Protocol") or global_protocol
            if protocol is not None:
                expected = merge_map(expected, {"protocol": protocol})
        if (expected or None) == (h.get("Config") or None):
            _set_config(h, w.get("Config"))


def _set_config(obj: dict[str, Any], config: Any) -> None:
    if config:
        obj["Config"] = config
    else:
        obj.pop("Config", None)
