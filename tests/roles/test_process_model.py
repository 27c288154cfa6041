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

from tests.support.ansible_run import playbook

HERE = Path(__file__).resolve().parent
SERVICES = [
    {"name": "web", "port": 8080, "sidecar": {"port": 21000, "admin_port": 19000}},
    {"name": "api", "port": 8081, "sidecar": {"port": 21001, "admin_port": 19001}},
]


def run(tmp_path: Path, model: str):
    return playbook(
        HERE / "process_model.yml",
        {
            "mesh_proxy_process_model": model,
            "mesh_proxy_config_dir": str(tmp_path / "proxy"),
            "mesh_proxy_prefix": str(tmp_path / "opt"),
            "mesh_proxy_user": getpass.getuser(),
            "mesh_proxy_group": grp.getgrgid(os.getgid()).gr_name,
            "mesh_proxy_consul_token": "not-a-secret",
            "meshkit_services": SERVICES,
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
