# SPDX-License-Identifier: MPL-2.0
"""Issue 15 acceptance on lab machines: `meshkit_proxy_defaults` sets local_connect_timeout_ms
and handshake_timeout_ms; the running proxies (meshkit-proxy@ under systemd on web and db)
report the new values on /metrics without a restart (same MainPID); a service whose
registration overrides one key gets its own value.

Needs root and systemd-nspawn; runs in an isolated lab of its own (`t-ccfg`) so it can run next
to someone's host-mode lab: `MESHKIT_LAB_ISOLATED=1 pytest -m lab tests/lab/test_central_config.py`.
The proxies learn the new values from the control plane, which merges `proxy-defaults` into the
sidecar registrations as Consul 1.7.14 does (consul-1.7.14-edges e22-e27).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from meshkit_tools.lab.paths import LabPaths
from meshkit_tools.lab.spec import LabSpec
from tests.support.lab_rollout import (
    ROLLOUT_MARKS,
    changed_counts,
    isolated_lab,
    on,
    playbook,
    settle,
)
from tests.support.paths import ROOT

LAB = "t-ccfg"
SETTING = "meshkit_proxy_listener_setting"
DEFAULTS = {"config": {"local_connect_timeout_ms": 1500, "handshake_timeout_ms": 7000}}

pytestmark = ROLLOUT_MARKS


@pytest.fixture(scope="module")
def mesh_lab() -> Iterator[tuple[LabSpec, LabPaths]]:
    yield from isolated_lab(LAB)


def setting(spec: LabSpec, paths: LabPaths, machine: str, port: int, name: str) -> float | None:
    text = on(spec, paths, machine, f"curl -sS -m 5 http://127.0.0.1:{port}/metrics")
    for line in text.splitlines():
        if line.startswith(SETTING) and 'listener="public"' in line and f'"{name}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def main_pid(spec: LabSpec, paths: LabPaths, machine: str, unit: str) -> str:
    return on(spec, paths, machine, f"systemctl show -p MainPID --value {unit}")


def test_proxy_defaults_reach_running_proxies_and_registration_wins(
    mesh_lab: tuple[LabSpec, LabPaths], tmp_path: Path
) -> None:
    spec, paths = mesh_lab
    playbook(paths, tmp_path, "demo.yml")
    proxies = {"web": ("meshkit-proxy@web-web", 19000), "db": ("meshkit-proxy@db-db", 19001)}
    pids = {m: main_pid(spec, paths, m, unit) for m, (unit, _) in proxies.items()}
    for machine, (_, port) in proxies.items():
        assert setting(spec, paths, machine, port, "handshake_timeout_ms") == 10000

    defaults = tmp_path / "defaults.yml"
    defaults.write_text(yaml.safe_dump({"meshkit_proxy_defaults": DEFAULTS}))
    playbook(paths, tmp_path, "site.yml", "-e", f"@{defaults}")
    for machine, (_, port) in proxies.items():
        settle(
            f"{machine} reports handshake_timeout_ms 7000",
            lambda m=machine, p=port: setting(spec, paths, m, p, "handshake_timeout_ms") == 7000,  # type: ignore[misc]
            timeout=30.0,
        )
        assert setting(spec, paths, machine, port, "local_connect_timeout_ms") == 1500
    assert {m: main_pid(spec, paths, m, unit) for m, (unit, _) in proxies.items()} == pids

    # web's own registration overrides one key: a host_vars layer for web only
    override = tmp_path / "override"
    (override / "host_vars").mkdir(parents=True)
    (override / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {"web": {}}}}))
    web_vars = yaml.safe_load((ROOT / "inventories/lab/group_vars/web_servers.yml").read_text())
    web_vars["meshkit_services"][0]["sidecar"]["config"] = {"local_connect_timeout_ms": 900}
    (override / "host_vars" / "web.yml").write_text(yaml.safe_dump(web_vars))
    playbook(paths, tmp_path, "site.yml", "-e", f"@{defaults}", "-i", str(override))
    settle(
        "web reports its own local_connect_timeout_ms 900",
        lambda: setting(spec, paths, "web", 19000, "local_connect_timeout_ms") == 900,
        timeout=30.0,
    )
    assert setting(spec, paths, "db", 19001, "local_connect_timeout_ms") == 1500
    # key by key: web keeps the handshake_timeout_ms of proxy-defaults
    assert setting(spec, paths, "web", 19000, "handshake_timeout_ms") == 7000
    assert {m: main_pid(spec, paths, m, unit) for m, (unit, _) in proxies.items()} == pids
    out = on(spec, paths, "web", "curl -sS -m 10 http://127.0.0.1:9191/")
    assert out.startswith("db on "), out  # traffic still flows through the mesh

    # re-running the same rollout changes nothing, although the agent answers merged configs
    again = playbook(paths, tmp_path, "site.yml", "-e", f"@{defaults}", "-i", str(override))
    assert changed_counts(again) == {"0"}, again[-3000:]
