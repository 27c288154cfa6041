# SPDX-License-Identifier: MPL-2.0
"""The lifecycle play every Consul module goes through (create, again, change, check, absent,
absent again), checked from what each task returned; and a task that reads an API path back."""

from __future__ import annotations

from typing import Any

from tests.support.devagent import DevAgent


def read(agent: DevAgent, path: str, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "ansible.builtin.uri": {
            "url": f"{agent.url}{path}",
            "return_content": True,
            "status_code": [200, 404],
        },
    }


def assert_lifecycle(play: Any, change_fields: set[str]) -> None:
    assert play.returncode == 0, play.output
    create, again = play.task("create"), play.task("again")
    assert create["changed"] and create["operation"] == "create"
    assert create["diff"]["before"] == {}
    assert not again["changed"] and "operation" not in again and "diff" not in again
    change = play.task("change")
    assert change["changed"] and change["operation"] == "update"
    assert set(change["diff"]["before"]) == change_fields, change["diff"]
    assert set(change["diff"]["after"]) == change_fields, change["diff"]
    check = play.task("check")
    assert check["changed"] and check["operation"] == "update" and check["diff"]["after"]
    absent, absent_again = play.task("absent"), play.task("absent again")
    assert absent["changed"] and absent["operation"] == "remove"
    assert absent["diff"]["after"] == {}
    assert not absent_again["changed"]
