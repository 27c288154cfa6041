# SPDX-License-Identifier: MPL-2.0
"""consul_acl_token and consul_acl_policy through real ansible-playbook against the dev agent
with ACLs on (default deny): lifecycle, check mode, diff, rotation, and the secret kept out of
every output line (-vvv, --diff) while the registered variable holds it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.ansible_run import PlayRun, run_play
from tests.support.devagent import DevAgent

POLICY = {"name": "db-q-read", "rules": 'query "db-q" { policy = "read" }'}
TOKEN = {
    "description": "meshkit proxy web on app1",
    "service_identities": [{"service_name": "web"}],
    "policies": ["db-q-read"],
}


def show(register: str) -> dict[str, Any]:
    """A debug task that repeats the non-secret fields of a registered token result."""
    fields = (
        f"{{{{ {{'changed': {register}.changed, 'operation': {register}.operation | default(''),"
        f" 'accessor_id': {register}.accessor_id | default(''), 'token': {register}.token,"
        f" 'diff': {register}.diff | default({{}}),"
        f" 'has_secret': ({register}.secret_id | default('')) | length > 0}} }}}}"
    )
    return {"name": f"show {register}", "ansible.builtin.debug": {"msg": fields}}


def save_secret(register: str, path: Path) -> dict[str, Any]:
    return {
        "name": f"save {register}",
        "ansible.builtin.copy": {
            "content": f"{{{{ {register}.secret_id }}}}",
            "dest": str(path),
            "mode": "0600",
        },
        "no_log": True,
    }


def shown(play: PlayRun, register: str) -> dict[str, Any]:
    msg: dict[str, Any] = play.task(f"show {register}")["msg"]
    return msg


def token_play(agent: DevAgent, tmp_path: Path, name: str, tasks: list[dict[str, Any]],
               **kw: Any) -> PlayRun:  # fmt: skip
    return run_play(
        tmp_path / name,
        tasks,
        agent.address,
        name=name,
        module_defaults={"token": agent.acl_master_token},
        extra_env={"ANSIBLE_VERBOSITY": "3"},
        **kw,
    )


def test_consul_acl_policy_lifecycle(dev_agent_acl: DevAgent, tmp_path: Path) -> None:
    mod = "meshkit.connect.consul_acl_policy"
    changed_rules = {**POLICY, "rules": '{"query": {"db-q": {"policy": "write"}}}'}
    play = token_play(
        dev_agent_acl,
        tmp_path,
        "policy",
        [
            {"name": "create", mod: POLICY},
            {"name": "again", mod: POLICY},
            {"name": "check", mod: {**changed_rules, "description": "x"}, "check_mode": True},
            {"name": "change", mod: changed_rules},
            {"name": "absent", mod: {"name": "db-q-read", "state": "absent"}},
            {"name": "absent again", mod: {"name": "db-q-read", "state": "absent"}},
            {
                "name": "bad",
                mod: {"name": "broken", "rules": 'service "x" { policy = "x" }'},
                "ignore_errors": True,
            },
        ],
    )
    assert play.returncode == 0, play.output
    create, again = play.task("create"), play.task("again")
    assert create["changed"] and create["operation"] == "create" and create["id"]
    assert create["diff"] == {"before": {}, "after": {**POLICY, "description": "",
                                                      "datacenters": []}}  # fmt: skip
    assert not again["changed"] and again["id"] == create["id"]
    check = play.task("check")
    assert check["changed"] and set(check["diff"]["after"]) == {"rules", "description"}
    change = play.task("change")
    assert change["operation"] == "update" and change["id"] == create["id"]
    assert change["diff"]["after"] == {"rules": changed_rules["rules"]}
    assert play.task("absent")["operation"] == "remove"
    assert not play.task("absent again")["changed"]
    bad = play.task("bad")
    assert "Invalid service policy" in bad["msg"]
    names = [p["Name"] for p in dev_agent_acl.ok("GET", "/v1/acl/policies")]
    assert names == ["global-management"]


def test_consul_acl_token_lifecycle_rotation_and_secret(
    dev_agent_acl: DevAgent,
    tmp_path: Path,
) -> None:
    agent = dev_agent_acl
    agent.ok("PUT", "/v1/acl/policy", {"Name": "db-q-read", "Rules": POLICY["rules"]})
    agent.ok("PUT", "/v1/acl/policy", {"Name": "extra", "Rules": ""})
    mod = "meshkit.connect.consul_acl_token"
    secrets = {n: tmp_path / f"{n}.secret" for n in ("created", "again", "changed", "rotated")}
    changed_token = {**TOKEN, "service_identities": [{"service_name": "web"},
                                                     {"service_name": "web2"}]}  # fmt: skip
    play = token_play(
        agent,
        tmp_path,
        "token",
        [
            {"name": "check create", mod: TOKEN, "check_mode": True, "register": "c0"},
            show("c0"),
            {"name": "create", mod: TOKEN, "register": "created"},
            show("created"),
            save_secret("created", secrets["created"]),
            {"name": "again", mod: TOKEN, "register": "again"},
            show("again"),
            save_secret("again", secrets["again"]),
            {
                "name": "change",
                mod: {**changed_token, "policies": ["db-q-read", "extra"]},
                "register": "changed",
            },
            show("changed"),
            save_secret("changed", secrets["changed"]),
            {
                "name": "rotate",
                mod: {**changed_token, "policies": ["db-q-read", "extra"], "rotate": True},
                "register": "rotated",
            },
            show("rotated"),
            save_secret("rotated", secrets["rotated"]),
        ],
    )
    assert play.returncode == 0, play.output
    c0 = shown(play, "c0")
    assert c0["changed"] and c0["operation"] == "create" and not c0["has_secret"]
    created, again = shown(play, "created"), shown(play, "again")
    assert created["operation"] == "create" and created["has_secret"]
    assert created["token"] == {
        "description": TOKEN["description"],
        "service_identities": [{"service_name": "web", "datacenters": []}],
        "policies": ["db-q-read"],
        "local": False,
    }
    assert not again["changed"] and again["accessor_id"] == created["accessor_id"]
    changed, rotated = shown(play, "changed"), shown(play, "rotated")
    assert changed["operation"] == "update" and changed["accessor_id"] == created["accessor_id"]
    assert changed["diff"]["after"] == {
        "policies": ["db-q-read", "extra"],
        "service_identities": [
            {"service_name": "web", "datacenters": []},
            {"service_name": "web2", "datacenters": []},
        ],
    }
    assert rotated["operation"] == "rotate" and rotated["accessor_id"] == created["accessor_id"]
    assert rotated["diff"]["after"] == {"secret_id": "replaced"}
    first, rotated_secret = secrets["created"].read_text(), secrets["rotated"].read_text()
    assert first == secrets["again"].read_text() == secrets["changed"].read_text()
    assert rotated_secret != first
    # What the agent holds: the rotated secret works with the web identity, the old is gone.
    me = agent.ok("GET", "/v1/acl/token/self", token=rotated_secret)
    assert me["AccessorID"] == created["accessor_id"]
    assert [i["ServiceName"] for i in me["ServiceIdentities"]] == ["web", "web2"]
    assert agent.get("/v1/acl/token/self", token=first)[:3:2] == (403, "ACL not found")
    # No secret in any output line (-vvv, --diff) nor in the recorded (censored) results.
    results = (tmp_path / "token" / "token.results.json").read_text()
    for secret in (first, rotated_secret):
        assert secret not in play.output
        assert secret not in results
    assert "<<" not in json.dumps(created)  # the debug line itself is plain data

    # Absent: deleted once, then nothing to do.
    gone = token_play(
        agent,
        tmp_path,
        "absent",
        [
            {"name": "absent", mod: {**TOKEN, "state": "absent"}},
            {"name": "absent again", mod: {**TOKEN, "state": "absent"}},
        ],
    )
    assert gone.returncode == 0, gone.output
    assert gone.task("absent")["operation"] == "remove"
    assert not gone.task("absent again")["changed"]
    assert all(t["Description"] != TOKEN["description"] for t in agent.ok("GET", "/v1/acl/tokens"))


def test_consul_acl_token_refuses_bad_input_and_writes_nothing(
    dev_agent_acl: DevAgent,
    tmp_path: Path,
) -> None:
    agent = dev_agent_acl
    before = agent.ok("GET", "/v1/acl/tokens")
    mod = "meshkit.connect.consul_acl_token"
    play = token_play(
        agent,
        tmp_path,
        "bad",
        [
            {
                "name": "unknown policy",
                mod: {**TOKEN, "policies": ["nope"]},
                "ignore_errors": True,
            },
            {
                "name": "twice",
                mod: {
                    **TOKEN,
                    "service_identities": [{"service_name": "a"}, {"service_name": "a"}],
                },
                "ignore_errors": True,
            },
        ],
    )
    assert play.returncode == 0, play.output
    unknown = play.task("unknown policy")
    assert unknown["msg"].startswith("policies: no ACL policy named nope")
    assert play.task("twice")["msg"] == "service_identities: a service_name is listed twice"
    wrong = run_play(
        tmp_path / "wrong",
        [{"name": "wrong token", mod: TOKEN, "ignore_errors": True}],
        agent.address,
        module_defaults={"token": "11111111-2222-3333-4444-555555555555"},
    )
    msg = wrong.task("wrong token")["msg"]
    assert "ACL not found" in msg and "CONSUL_HTTP_TOKEN" in msg, msg
    assert agent.ok("GET", "/v1/acl/tokens") == before
    # A caller with acl:read only gets hidden secrets: a clear failure, never "<hidden>".
    agent.ok("PUT", "/v1/acl/policy", {"Name": "acl-read", "Rules": 'acl = "read"'})
    reader = agent.ok("PUT", "/v1/acl/token", {"Policies": [{"Name": "acl-read"}]})["SecretID"]
    agent.ok("PUT", "/v1/acl/token", {"Description": TOKEN["description"]})
    hidden = run_play(
        tmp_path / "hidden",
        [{"name": "reader", mod: {"description": TOKEN["description"]}, "ignore_errors": True}],
        agent.address,
        module_defaults={"token": reader},
    )
    msg = hidden.task("reader")["msg"]
    assert "acl:read but not acl:write" in msg and "<hidden>" not in msg, msg
