# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)
"""Run meshkit.connect.consul_acl_token and censor its result wherever Ansible shows it.

A module cannot mark its own result ``no_log`` (Ansible drops ``_ansible_*`` keys a module
returns), and a result that carries a token's SecretID must never reach a callback: not the
default one at ``-vvv``, not a log or diff printer. This controller-side wrapper sets the flag
whenever the module returned a secret; a registered variable still holds every field.
"""

from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):  # type: ignore[misc]
    _supports_check_mode = True
    _supports_async = False

    def run(
        self, tmp: str | None = None, task_vars: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        result.update(
            self._execute_module(
                module_name="meshkit.connect.consul_acl_token",
                module_args=self._task.args,
                task_vars=task_vars,
            )
        )
        if result.get("secret_id"):
            result["_ansible_no_log"] = True
        return result
