# SPDX-License-Identifier: MPL-2.0
"""mesh_proxy_process_model: the tasks and handlers that differ between `unit` and `shared`, run
for real in check mode on localhost (the switch, the unit installed, which start task runs, the
restart handlers' command lines). What systemd then does with them is for a lab run."""

from __future__ import annotations

import getpass
import grp
import json
import os
import re
from pathlib import Path
from typing import Any

from tests.support.ansible_run import playbook

HERE = Path(__file__).resolve().parent
SERVICES = [
    {"name": "web", "port": 8080, "sidecar": {"port": 21000, "admin_port": 19000}},
    {"name": "api", "port": 8081, "sidecar": {"port": 21001, "admin_port": 19001}},
]


def run(tmp_path: Path, model: str, services: list[dict[str, Any]] = SERVICES, **extra: object):
    tmp_path.mkdir(parents=True, exist_ok=True)
    return playbook(
        HERE / "process_model.yml",
        {
            "mesh_proxy_process_model": model,
            **extra,
            "mesh_proxy_config_dir": str(tmp_path / "proxy"),
            "mesh_proxy_prefix": str(tmp_path / "opt"),
            "mesh_proxy_user": getpass.getuser(),
            "mesh_proxy_group": grp.getgrgid(os.getgid()).gr_name,
            "mesh_proxy_consul_token": "not-a-secret",
            "meshkit_services": services,
        },
        tmp_path,
        "--check",
        "--diff",
        "-v",
    )


def test_shared_installs_the_host_unit_and_reloads_it(tmp_path: Path) -> None:
    got = run(tmp_path, "shared")
    assert got.rc == 0, got.output
    out = got.output
    assert "TASK [mesh_proxy : Remove the per-proxy template unit]" in out
    assert '"path": "/etc/systemd/system/meshkit-proxy@.service", "state": "absent"' in out
    unit = out.split("Install the systemd unit of the process model]")[1].split("TASK [")[0]
    assert "/meshkit-proxy-host.service.j2\n" in unit, unit
    assert f"ExecStart={tmp_path}/opt/current/bin/meshkit-proxy-host -dir {tmp_path}/proxy" in unit
    section = out.split("TASK [mesh_proxy : Enable and start the proxies]")[1]
    assert section.split("TASK [")[0].count("skipping") >= 2  # no per-proxy unit starts
    ids = re.search(r'"_mesh_proxy_restart_ids": (\[[^]]*\])', out)
    assert ids is not None and sorted(json.loads(ids.group(1))) == ["api", "web"]
    want = f'"{tmp_path}/opt/bin/meshkit-proxy-restart", "--host", "reload", '
    assert want + '"/run/meshkit-proxy-host", "60", "web:19000", "api:19001"]' in out, out
    want = f'"{tmp_path}/opt/bin/meshkit-proxy-restart", "--host", "restart", '
    assert want + '"/run/meshkit-proxy-host", "60", "web:19000", "api:19001"]' in out


def test_unit_keeps_the_per_proxy_units_and_removes_the_host_unit(tmp_path: Path) -> None:
    got = run(tmp_path, "unit")
    assert got.rc == 0, got.output
    out = got.output
    assert '"path": "/etc/systemd/system/meshkit-proxy-host.service", "state": "absent"' in out
    unit = out.split("Install the systemd unit of the process model]")[1].split("TASK [")[0]
    assert "/meshkit-proxy@.service.j2\n" in unit, unit
    assert f"ExecStart={tmp_path}/opt/current/bin/meshkit-proxy -sidecar-for %i" in unit
    section = out.split("TASK [mesh_proxy : Enable and start the proxy host]")[1]
    assert "skipping" in section.split("TASK [")[0]
    # today's rolling restart, one proxy at a time, with its three arguments
    assert '"--host"' not in out
    assert "RUNNING HANDLER [mesh_proxy : Restart meshkit proxies one at a time]" in out


def chosen_model(output: str) -> str:
    found = re.search(r'"_mesh_proxy_model": "(\w+)"', output)
    assert found is not None, output
    return found.group(1)


def test_auto_runs_two_proxies_shared_and_one_as_its_unit(tmp_path: Path) -> None:
    two = run(tmp_path / "two", "auto")
    assert two.rc == 0, two.output
    assert chosen_model(two.output) == "shared"
    assert "/meshkit-proxy-host.service.j2\n" in two.output
    one = run(tmp_path / "one", "auto", SERVICES[:1])
    assert one.rc == 0, one.output
    assert chosen_model(one.output) == "unit"
    assert "/meshkit-proxy@.service.j2\n" in one.output
    # the threshold moves the choice; an explicit model ignores it
    three = run(tmp_path / "three", "auto", mesh_proxy_shared_min_proxies=3)
    assert chosen_model(three.output) == "unit"
    forced = run(tmp_path / "forced", "shared", SERVICES[:1])
    assert chosen_model(forced.output) == "shared"


def test_auto_threshold_below_one_is_refused(tmp_path: Path) -> None:
    got = run(tmp_path, "auto", mesh_proxy_shared_min_proxies=0)
    assert got.rc != 0
    assert "mesh_proxy_shared_min_proxies is 0; set it to 1 or more" in got.output
