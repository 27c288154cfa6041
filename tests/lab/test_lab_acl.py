# SPDX-License-Identifier: MPL-2.0
"""The mesh with ACLs on (default deny) on real lab machines: a token per proxy, least privilege.

cp runs the development control plane with the management (master) token and is the control
host that mints tokens; web and db are managed hosts that must never see that token. Proves:
each proxy's token file (0600, owned by meshkit) holds a distinct token whose only service
identity is its own service; no managed host holds the management token in /etc, /opt, /run or
its journal; traffic flows through the service and prepared-query upstreams (verify.yml); a
proxy's token cannot fetch another service's leaf, write an intention or register another
service; a re-run changes nothing.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from meshkit_tools.lab import lab
from meshkit_tools.lab.paths import LabPaths
from meshkit_tools.lab.spec import DEFAULT_GROUPS, DEFAULT_MACHINES, DEFAULT_PARENTS, build_spec
from tests.support.lab_rollout import ROLLOUT_MARKS
from tests.support.waits import wait_until

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
LAB = "lp-tokens"
AGENT = "http://198.18.0.10:8500"

pytestmark = ROLLOUT_MARKS


def run(inventory: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "ANSIBLE_DEPRECATION_WARNINGS": "false",
        "ANSIBLE_LOCALHOST_WARNING": "false",
    }
    res = subprocess.run(
        [str(VENV_BIN / args[0]), "-i", str(ROOT / "inventories/lab"), "-i", str(inventory),
         *args[1:]],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=900, check=False,
    )  # fmt: skip
    if check and res.returncode != 0:
        raise AssertionError(f"{args[0]} failed:\n{res.stdout[-6000:]}\n{res.stderr[-3000:]}")
    return res


def shell(inventory: Path, host: str, command: str) -> str:
    """stdout of a shell command on one machine (ad-hoc, one line of JSON per host)."""
    res = run(inventory, "ansible", host, "-m", "ansible.builtin.shell", "-a", command,
              "-o", check=False)  # fmt: skip
    line = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    match = re.search(r"\(stdout\) (.*)$", line)
    if "| CHANGED |" not in line and "| FAILED |" not in line:
        raise AssertionError(f"{host}: {command}: {res.stdout[-2000:]}{res.stderr[-1000:]}")
    return (match.group(1) if match else "").replace("\\n", "\n")


def agent(
    inventory: Path, method: str, path: str, token: str, body: object = None
) -> tuple[int, str]:
    """One request to the dev agent, sent from cp (the lab is only reachable from inside)."""
    data = "" if body is None else f"-H 'Content-Type: application/json' -d '{json.dumps(body)}'"
    out = shell(
        inventory,
        "cp",
        f"curl -s -o /tmp/acl-body -w '%{{http_code}}' -X {method} {data} "
        f"-H 'X-Consul-Token: {token}' {AGENT}{path}; echo; cat /tmp/acl-body",
    )
    status, _, text = out.partition("\n")
    return int(status), text


@pytest.fixture(scope="module")
def acl_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabPaths, str, Path]]:
    spec = build_spec(LAB, DEFAULT_MACHINES, DEFAULT_GROUPS, DEFAULT_PARENTS, isolated=True)
    lab.down(spec.name, quiet=True)
    paths = lab.up(spec)
    master = str(uuid.uuid4())
    extra = tmp_path_factory.mktemp("acl") / "acl.yml"
    extra.write_text(
        yaml.safe_dump(
            {
                "meshkit_consul_management_token": master,
                "meshkit_acl_controller": "cp",
                "meshkit_consul_controller_http_addr": "198.18.0.10:8500",
                "meshkit_acl_policies": [
                    {"name": "db-nearest-read", "rules": 'query "db-nearest" { policy = "read" }'}
                ],
            }
        )
    )
    extra.chmod(0o600)
    try:
        yield paths, master, extra
    finally:
        lab.down(spec.name, quiet=True)
        assert lab.leftovers(spec.name) == []


def test_token_per_proxy_on_lab_machines(acl_lab: tuple[LabPaths, str, Path]) -> None:
    paths, master, extra_file = acl_lab
    inv = paths.inventory
    extra = f"@{extra_file}"
    first = run(inv, "ansible-playbook", "-e", extra, "playbooks/demo.yml")
    assert "failed=0" in first.stdout and master not in first.stdout + first.stderr

    # Each proxy's token file: 0600, owned by meshkit, a distinct token of its own service.
    tokens: dict[str, str] = {}
    for host, sid in (("web", "web-web"), ("db", "db-db"), ("cp", "db-cp")):
        path = f"/etc/meshkit/proxy/{sid}.token"
        meta = shell(inv, host, f"stat -c '%a %U' {path}").strip()
        assert meta == "600 meshkit", (host, meta)
        tokens[sid] = shell(inv, host, f"cat {path}").strip()
    assert len(set(tokens.values())) == 3 and master not in tokens.values()
    for sid, secret in tokens.items():
        status, body = agent(inv, "GET", "/v1/acl/token/self", secret)
        me = json.loads(body)
        assert status == 200 and [i["ServiceName"] for i in me["ServiceIdentities"]] == [
            sid.split("-")[0]
        ], me
        assert "Policies" not in me

    # The management token on no managed host: files under /etc, /opt, /run, and the journal.
    # The token is sent base64-encoded: Ansible logs a module's arguments to the host's journal,
    # so a literal token in this very command would be found there.
    encoded = base64.b64encode(master.encode()).decode()
    for host in ("web", "db"):
        found = shell(
            inv,
            host,
            f'T=$(echo {encoded} | base64 -d); grep -rlsF "$T" /etc /opt /run; '
            'journalctl --no-pager -o cat | grep -cF "$T"; true',
        )
        assert found.strip() == "0", (host, found)

    # web's token: no other service's leaf, no intention write, no registration of db.
    web = tokens["web-web"]
    assert agent(inv, "GET", "/v1/agent/connect/ca/leaf/db", web) == (403, "Permission denied")
    assert agent(inv, "GET", "/v1/agent/connect/ca/leaf/web", web)[0] == 200
    ixn = {"SourceName": "web", "DestinationName": "db", "Action": "deny"}
    assert agent(inv, "POST", "/v1/connect/intentions", web, ixn) == (403, "Permission denied")
    reg = {"Name": "db", "ID": "db-evil", "Port": 9999}
    assert agent(inv, "PUT", "/v1/agent/service/register", web, reg) == (403, "Permission denied")

    # Re-run: nothing changes (no new token, no restart).
    again = run(inv, "ansible-playbook", "-e", extra, "playbooks/site.yml")
    recap = again.stdout[again.stdout.rfind("PLAY RECAP") :]
    assert re.findall(r"changed=(\d+)", recap) and set(re.findall(r"changed=(\d+)", recap)) == {
        "0"
    }, recap
    for sid, secret in tokens.items():
        host = {"web-web": "web", "db-db": "db", "db-cp": "cp"}[sid]
        assert shell(inv, host, f"cat /etc/meshkit/proxy/{sid}.token").strip() == secret

    # Rotation of web's token: a new secret in web's token file only (same AccessorID), the
    # old one refused at once, and only web's proxy restarts.
    def pid(host: str, sid: str) -> str:
        return shell(inv, host, f"systemctl show -p MainPID --value meshkit-proxy@{sid}").strip()

    before = {sid: pid(host, sid) for host, sid in (("web", "web-web"), ("db", "db-db"))}
    accessor = json.loads(agent(inv, "GET", "/v1/acl/token/self", web)[1])["AccessorID"]
    rotate = '{"meshkit_acl_rotate": ["web-web"]}'
    run(inv, "ansible-playbook", "-e", extra, "-e", rotate, "playbooks/site.yml")
    rotated = shell(inv, "web", "cat /etc/meshkit/proxy/web-web.token").strip()
    assert rotated and rotated != web
    assert agent(inv, "GET", "/v1/acl/token/self", web) == (403, "ACL not found")
    assert json.loads(agent(inv, "GET", "/v1/acl/token/self", rotated)[1])["AccessorID"] == accessor
    assert shell(inv, "db", "cat /etc/meshkit/proxy/db-db.token").strip() == tokens["db-db"]
    assert pid("web", "web-web") != before["web-web"]
    assert pid("db", "db-db") == before["db-db"]
    assert (
        shell(inv, "web", "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9191/") == "200"
    )

    # A service removed from a host (db no longer runs on db), with both prunes on: db-db is
    # deregistered with its own token before that token is deleted, so neither the service nor
    # its sidecar stays in the catalog; its proxy stops and its token file goes; web reaches the
    # remaining db instance (db-cp).
    removed = json.dumps(
        {"meshkit_services": [], "mesh_service_prune": True, "mesh_proxy_prune": True}
    )
    gone = run(inv, "ansible-playbook", "-e", extra, "-e", removed,
               "--limit", "db", "playbooks/site.yml")  # fmt: skip
    assert master not in gone.stdout + gone.stderr
    assert tokens["db-db"] not in gone.stdout + gone.stderr
    assert agent(inv, "GET", "/v1/acl/token/self", tokens["db-db"]) == (
        403,
        "ACL not found",
    ), gone.stdout[-4000:]
    for name, ids in (("db", ["db-cp"]), ("db-sidecar-proxy", ["db-cp-sidecar-proxy"])):
        status, body = agent(inv, "GET", f"/v1/catalog/service/{name}", master)
        assert status == 200, body
        assert sorted(s["ServiceID"] for s in json.loads(body)) == ids, gone.stdout[-4000:]
    state = shell(inv, "db", "systemctl is-active meshkit-proxy@db-db.service; true").strip()
    assert state != "active", state
    left = shell(inv, "db", "ls /etc/meshkit/proxy/ | grep '^db-db[.]'; true").split()
    assert left == [], (left, gone.stdout[-4000:])
    assert agent(inv, "GET", "/v1/acl/token/self", tokens["db-cp"])[0] == 200
    assert agent(inv, "GET", "/v1/acl/token/self", rotated)[0] == 200
    # web's proxy learns of the deregistration by its blocking query: five answers in a row
    # from the remaining instance, within a bounded wait.
    five = (
        "for i in 1 2 3 4 5; do "
        "curl -s -o /dev/null -w '%{http_code} ' http://127.0.0.1:9191/; done"
    )
    codes: list[str] = []

    def all_ok() -> bool:
        codes[:] = shell(inv, "web", five).split()
        return codes == ["200"] * 5

    wait_until(all_ok, timeout=30, interval=1, what=lambda: f"web -> db answers: {codes}")

    # A second run with the prunes changes nothing.
    twice = run(inv, "ansible-playbook", "-e", extra, "-e", removed,
                "--limit", "db", "playbooks/site.yml")  # fmt: skip
    recap = twice.stdout[twice.stdout.rfind("PLAY RECAP") :]
    assert set(re.findall(r"changed=(\d+)", recap)) == {"0"}, recap
