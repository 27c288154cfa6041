# SPDX-License-Identifier: MPL-2.0
"""A 403 is never "absent" (issue 13 item 3).

Against the real dev agent with ACLs on (default deny): a wrong token, a token from each
source (module option, CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE) and no token at all. Every
read that gets a 403 fails the task naming the token's source and Consul's text, and nothing
is reported as absent, created or removed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.support.ansible_run import run_play
from tests.support.devagent import DevAgent

SERVICE = "meshkit.connect.consul_service"
INTENTION = "meshkit.connect.consul_intention"
DB: dict[str, Any] = {"name": "db", "port": 5432, "sidecar": {"port": "auto"}}
WRONG = "00000000-dead-beef-0000-000000000000"


def _status(play: Any, name: str) -> str:
    return str(next(r["status"] for r in play.results if r["task"] == name))


def _failed(result: dict[str, Any], *needles: str) -> None:
    assert result.get("status") == 403, result
    assert not result.get("changed"), result
    assert "operation" not in result, result
    for needle in needles:
        assert needle in result["msg"], result["msg"]
    assert WRONG not in str(result)


def _registered(agent: DevAgent) -> set[str]:
    status, _, body = agent.get("/v1/agent/services")
    assert status == 200
    return set(body)


def test_wrong_token_never_reads_as_absent(
    dev_agent_acl: DevAgent,
    tmp_path: Path,
) -> None:
    agent = dev_agent_acl
    master = agent.acl_master_token
    assert master
    setup = run_play(
        tmp_path / "setup",
        [
            {"name": "db", SERVICE: {"service": DB}},
            {"name": "intention", INTENTION: {"source": "web", "destination": "db",
                                              "api": "config_entry"}},
        ],
        agent.address,
        module_defaults={"token": master},
    )  # fmt: skip
    assert setup.returncode == 0, setup.output
    assert {"db", "db-sidecar-proxy"} <= _registered(agent)

    absent: dict[str, Any] = {"service": {"name": "db"}, "state": "absent"}
    tasks: list[dict[str, Any]] = [
        {"name": "service absent", SERVICE: absent, "ignore_errors": True},
        {"name": "service absent check", SERVICE: absent, "check_mode": True,
         "ignore_errors": True},
        {"name": "new service check", SERVICE: {"service": dict(DB, name="cache")},
         "check_mode": True, "ignore_errors": True},
        {"name": "intention absent", INTENTION: {"source": "web", "destination": "db",
                                                 "api": "config_entry", "state": "absent"},
         "ignore_errors": True},
    ]  # fmt: skip
    wrong = run_play(tmp_path / "option", tasks, agent.address, module_defaults={"token": WRONG})
    for name in ("service absent", "service absent check", "new service check"):
        assert _status(wrong, name) == "failed"
        _failed(wrong.task(name), "403", "ACL not found", "the module's token option")
    assert _status(wrong, "intention absent") == "failed"
    _failed(wrong.task("intention absent"), "403", "ACL not found", "the module's token option")
    # (Not asserted on this run's output: ansible-core quotes the failing task's play source,
    # module_defaults and its literal token included; the env and file runs below check it.)

    env = run_play(tmp_path / "env", tasks[:1], agent.address,
                   extra_env={"CONSUL_HTTP_TOKEN": WRONG})  # fmt: skip
    _failed(env.task("service absent"), "403", "ACL not found", "from CONSUL_HTTP_TOKEN ")
    assert WRONG not in env.output

    token_file = tmp_path / "token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(WRONG + "\n")
    from_file = run_play(tmp_path / "file", tasks[:1], agent.address,
                         extra_env={"CONSUL_HTTP_TOKEN_FILE": str(token_file)})  # fmt: skip
    _failed(
        from_file.task("service absent"),
        "403",
        "ACL not found",
        f"from CONSUL_HTTP_TOKEN_FILE ({token_file})",
        "is not a token this Consul knows",
    )
    assert WRONG not in from_file.output

    # No token at all: Consul's anonymous token, which default deny leaves without reads.
    anonymous = run_play(tmp_path / "anonymous", tasks[:1], agent.address)
    _failed(anonymous.task("service absent"), "403", "Permission denied", "from none",
            "lacks the ACL permission")  # fmt: skip

    # Nothing was removed, and the intention is still there.
    assert {"db", "db-sidecar-proxy"} <= _registered(agent)
    status, _, entry = agent.get("/v1/config/service-intentions/db")
    assert status == 200 and [s["Name"] for s in entry["Sources"]] == ["web"], entry


def test_a_valid_token_still_reads_absent_as_absent(
    dev_agent_acl: DevAgent,
    tmp_path: Path,
) -> None:
    """The other side: a real 404 with a good token is absent (changed=false, no failure)."""
    master = dev_agent_acl.acl_master_token
    play = run_play(
        tmp_path,
        [{"name": "absent", SERVICE: {"service": {"name": "nothing-here"}, "state": "absent"}}],
        dev_agent_acl.address,
        module_defaults={"token": master},
    )
    assert play.returncode == 0, play.output
    assert not play.task("absent")["changed"]


def test_a_token_on_an_agent_without_acls_still_reads_absent(
    dev_agent: DevAgent,
    tmp_path: Path,
) -> None:
    """ACLs off: /v1/acl/token/self is "ACL support disabled", which does not make a token
    unknown; a 404 stays absent."""
    play = run_play(
        tmp_path,
        [{"name": "absent", SERVICE: {"service": {"name": "nothing-here"}, "state": "absent"}}],
        dev_agent.address,
        module_defaults={"token": WRONG},
    )
    assert play.returncode == 0, play.output
    assert not play.task("absent")["changed"]
