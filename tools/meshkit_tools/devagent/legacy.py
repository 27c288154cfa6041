# SPDX-License-Identifier: MPL-2.0
"""Older proxy forms in `-config-dir` files: converted by the collection's one converter
(`module_utils/consul_legacy.py`, shared with `meshkit render --consul` and the mesh model), each
conversion logged as a deprecation warning naming the file and field and the modern spelling.

The converter is found where `meshkit render` finds the collection (the checkout's
`collections/` or ANSIBLE_COLLECTIONS_PATH). Where it is not installed, definitions pass
through unchanged and Consul 1.7's decoder answers as Consul does (`invalid config key
proxy_destination`), so nothing is half-converted.
"""

from __future__ import annotations

import importlib
import logging
import sys
from types import ModuleType
from typing import Any

log = logging.getLogger("meshkit_tools.devagent.legacy")

_MODULE = "ansible_collections.meshkit.connect.plugins.module_utils.consul_legacy"
_converter: ModuleType | bool | None = False  # False: not looked up yet


class LegacyFormError(ValueError):
    """A legacy form that cannot be converted; the message names the field and the fix."""


def _load() -> ModuleType | None:
    global _converter
    if _converter is False:
        from meshkit_tools.render_cmd import collection_roots

        _converter = None
        for root in collection_roots():
            if (root / "ansible_collections" / "meshkit" / "connect").is_dir():
                if str(root) not in sys.path:
                    sys.path.insert(0, str(root))
                try:
                    _converter = importlib.import_module(_MODULE)
                except ImportError:
                    _converter = None
                break
    return _converter if isinstance(_converter, ModuleType) else None


def modernize(definition: Any, where: str) -> Any:
    """`definition` with every older proxy form converted; warnings logged once per load."""
    conv = _load()
    if conv is None or not isinstance(definition, dict):
        return definition
    try:
        out, warnings, _command = conv.convert(definition, where)
    except conv.LegacyError as exc:
        raise LegacyFormError(str(exc)) from None
    for text in warnings:
        log.warning("%s", text)
    return out
