# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)
"""The one lifecycle every Consul module follows: read, normalise, compare, then write.

Comparing the whole normalised object (not only the keys the user gave, as community.general
does) is what makes a second run report ``changed=false`` and a removed tag or upstream a
change. Check mode stops before any write; the diff holds exactly the fields that differ.

Each Consul kind has one Store (``read() -> view | None``, ``write(view)``, ``delete()``) next
to its normalised view; a module names its ``result_key``, opens its store and says what it
wants (``desired``), and this lifecycle decides and reports the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.meshkit.connect.plugins.module_utils.consul_api import (
    CONNECTION_ARGSPEC,
    Connection,
    ConnectionSettingsError,
    ConsulClient,
    ConsulError,
)
from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import ModelError


def connection_argspec(**extra: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = {k: dict(v) for k, v in CONNECTION_ARGSPEC.items()}
    spec.update(extra)
    return spec


def client_for(module: AnsibleModule) -> ConsulClient:
    """The module's client; a connection setting that cannot be used fails the task cleanly."""
    try:
        conn = Connection.from_params(module.params)
    except ConnectionSettingsError as err:
        problem = str(err)
    else:
        return ConsulClient(conn)
    # Outside the except block: the setting is the whole story, no exception to attach.
    module.fail_json(msg=problem)
    raise AssertionError("unreachable: fail_json exits")


def changed_parts(before: Any, after: Any) -> tuple[Any, Any]:
    """The parts of two normalised objects that differ, recursing into mappings."""
    if isinstance(before, dict) and isinstance(after, dict):
        b_out: dict[str, Any] = {}
        a_out: dict[str, Any] = {}
        for key in sorted(set(before) | set(after)):
            if key not in after:
                b_out[key] = before[key]
            elif key not in before:
                a_out[key] = after[key]
            elif before[key] != after[key]:
                b_out[key], a_out[key] = changed_parts(before[key], after[key])
        return b_out, a_out
    return before, after


class Store(Protocol):
    """One Consul object of one kind, in its normalised view (a plain dict).

    ``read`` returns the view, or None when Consul holds no such object; a store remembers
    what it read (an ID, an index) so that ``write`` can create or update and ``delete`` can
    address the object.
    """

    def read(self) -> dict[str, Any] | None: ...

    def write(self, view: dict[str, Any]) -> None: ...

    def delete(self) -> None: ...


class Lifecycle:
    """Subclass, set ``result_key``, open ``self.store`` in ``__init__`` and fill ``desired``.

    ``desired`` returns the normalised object the module wants, or ``None`` for absent; it
    compares with ``==`` to what the store reads. Creating and updating both write the
    desired view (the store knows from its read whether the object exists); removing deletes.
    """

    result_key = "object"
    store: Store

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.client = client_for(module)

    def desired(self) -> dict[str, Any] | None:
        raise NotImplementedError

    def extra_result(self, final: dict[str, Any] | None) -> dict[str, Any]:
        return {}

    def execute(self) -> None:
        with failures_reported(self.module):
            result = self._run()
        self.module.exit_json(**result)

    def _run(self) -> dict[str, Any]:
        want = self.desired()
        have = self.store.read()
        operation = None
        if want != have:  # {} is "nothing" too, for lifecycles over many objects
            operation = "remove" if not want else "create" if not have else "update"
        result: dict[str, Any] = {"changed": operation is not None}
        if operation is not None:
            result["operation"] = operation
            before, after = changed_parts(have or {}, want or {})
            if self.module._diff:
                result["diff"] = {"before": before, "after": after}
            if not self.module.check_mode:
                if operation == "remove" and have:
                    self.store.delete()
                elif want:
                    self.store.write(want)
        final = want if operation is not None else have
        result[self.result_key] = final
        result.update(self.extra_result(final))
        return result


@contextmanager
def failures_reported(module: AnsibleModule) -> Iterator[None]:
    """Turn a refused model or a Consul error into ``fail_json`` with every detail."""
    try:
        yield
    except ModelError as err:
        module.fail_json(msg=str(err), problems=[str(p) for p in err.problems])
    except ConsulError as err:
        module.fail_json(msg=str(err), status=err.status)


def run_lifecycle(cls: type[Lifecycle], module: AnsibleModule) -> None:
    """Build the lifecycle (parsing and validating its input) and run it, failing cleanly."""
    with failures_reported(module):
        lifecycle = cls(module)
    lifecycle.execute()
