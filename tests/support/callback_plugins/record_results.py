# SPDX-License-Identifier: MPL-2.0
"""Record every task result of a play as JSON, so tests assert on what modules returned."""

from __future__ import annotations

import json
import os
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: record_results
type: aggregate
short_description: write task results to the file named by MESHKIT_RESULTS
description: Test helper of meshkit's collection tests.
"""


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "record_results"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.results: list[dict[str, Any]] = []

    def _record(self, result: Any, status: str) -> None:
        data = dict(result._result)
        data.pop("invocation", None)
        self.results.append({"task": result._task.get_name(), "status": status, "result": data})

    def v2_runner_on_ok(self, result: Any) -> None:
        self._record(result, "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._record(result, "skipped")

    def v2_playbook_on_stats(self, stats: Any) -> None:
        path = os.environ["MESHKIT_RESULTS"]
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.results, handle, default=str, indent=1)
