# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)
"""Readers for the shapes Consul answers with, one per shape, null-safe.

Consul 1.7 sends ``null`` where its docs promise an empty list (``{"db": null}`` from the
intentions match, ``"Sources": null``, ``"Meta": null``), leaves optional keys out and adds
keys of newer versions. Every module reads answers through these so that ``null`` and a
missing key mean "empty", an unknown key is ignored, and only an answer of the wrong shape
(a string where a list belongs) is an error: a ``ConsulError`` naming the endpoint, reported
by ``failures_reported`` as a clean failure before anything is changed.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.meshkit.connect.plugins.module_utils.consul_api import ConsulError


class MalformedAnswer(ConsulError):
    """Consul answered 2xx with a body of the wrong shape."""

    def __init__(self, path: str, what: str) -> None:
        super().__init__("GET", path, 200, f"malformed answer: {what}")


def list_of_objects(data: Any, path: str) -> list[dict[str, Any]]:
    """A JSON array of objects; ``null`` (or nothing) is the empty list."""
    if data is None or data == "":
        return []
    if not isinstance(data, list):
        raise MalformedAnswer(path, f"expected a list, got {type(data).__name__}")
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise MalformedAnswer(path, f"entry {i} is {type(item).__name__}, not an object")
    return list(data)


def map_of_objects(data: Any, path: str) -> dict[str, dict[str, Any]]:
    """A JSON object whose values are objects (``/v1/agent/services``, ``/v1/agent/checks``)."""
    if data is None or data == "":
        return {}
    if not isinstance(data, dict):
        raise MalformedAnswer(path, f"expected an object, got {type(data).__name__}")
    for key, item in data.items():
        if not isinstance(item, dict):
            raise MalformedAnswer(path, f"{key!r} is {type(item).__name__}, not an object")
    return dict(data)


def object_or_none(data: Any, path: str) -> dict[str, Any] | None:
    """One JSON object, or None for ``null``/no body (a 404 read with ``missing_ok``)."""
    if data is None or data == "":
        return None
    if not isinstance(data, dict):
        raise MalformedAnswer(path, f"expected an object, got {type(data).__name__}")
    return data


def field_list(obj: Any, key: str, path: str) -> list[dict[str, Any]]:
    """A list-of-objects field of an object, ``null`` or missing as empty."""
    value = obj.get(key) if isinstance(obj, dict) else None
    return list_of_objects(value, f"{path} ({key})")


def field_object(obj: Any, key: str) -> dict[str, Any]:
    """An object field (``Proxy``, ``Meta``, ``Definition``); ``null``/missing/odd as empty."""
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else {}
