# SPDX-License-Identifier: MPL-2.0
"""`mesh_proxy_process_model: shared` on lab machines under real systemd: the demo mesh rolled
out with one `meshkit-proxy@` unit per sidecar, switched to one `meshkit-proxy-host.service`
per host and back, with traffic through the mesh at every step.

What only systemd shows, and this test checks: the host unit starts its forked sidecars under
the unit's hardening (the system call filter included), `RuntimeDirectory` holds their pid
files, the journal lines carry each sidecar's ID, a killed sidecar is forked again by the
parent, a reload (`ExecReload`) restarts exactly the sidecar whose file changed, a new release
upgrades each host's parent in place (SIGUSR2: the same MainPID, every sidecar replaced, one
host at a time, no request of a client loop lost), switching models leaves no unit of the other
model behind, and a re-run changes nothing.

Needs root and systemd-nspawn; runs in an isolated lab of its own (`t-shared`):
`MESHKIT_LAB_ISOLATED=1 pytest -m lab tests/lab/test_shared_process.py`.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import shutil
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
    run,
    settle,
)
from tests.support.paths import ROOT

LAB = "t-shared"
HOST_UNIT = "meshkit-proxy-host.service"
RUN_DIR = "/run/meshkit-proxy-host"
# The demo inventory's sidecars: machine -> (sidecar ID, admin port).
SIDECARS = {"web": ("web-web", 19000), "db": ("db-db", 19001)}

pytestmark = ROLLOUT_MARKS


@pytest.fixture(scope="module")
def mesh_lab() -> Iterator[tuple[LabSpec, LabPaths]]:
    yield from isolated_lab(LAB)


def exists(spec: LabSpec, paths: LabPaths, machine: str, path: str) -> bool:
    return run(spec, paths, machine, f"test -e {path}").returncode == 0


def traffic_flows(spec: LabSpec, paths: LabPaths) -> bool:
    res = run(spec, paths, "web", "curl -sS -m 10 http://127.0.0.1:9191/")
    return res.returncode == 0 and res.stdout.startswith("db on ")


def sidecar_pid(spec: LabSpec, paths: LabPaths, machine: str) -> str:
    sidecar_id, _ = SIDECARS[machine]
    return on(spec, paths, machine, f"cat {RUN_DIR}/{sidecar_id}.pid")


def ready(spec: LabSpec, paths: LabPaths, machine: str) -> bool:
    _, port = SIDECARS[machine]
    res = run(spec, paths, machine, f"curl -sS -m 5 -o /dev/null -w '%{{http_code}}' "
                                    f"http://127.0.0.1:{port}/ready")  # fmt: skip
    return res.stdout.strip() == "200"


def proxy_units(spec: LabSpec, paths: LabPaths, machine: str) -> str:
    """The meshkit-proxy@ units systemd still knows (loaded, active or failed), one per line."""
    listing = "systemctl list-units --all --no-legend --plain 'meshkit-proxy@*'"
    return on(spec, paths, machine, f"{listing} | awk '{{print $1}}'")


def build_b(tmp: Path) -> Path:
    """A second build of this checkout, its version bumped by a .post1 (as Molecule `upgrade`'s
    prepare.yml makes build B), for the role's `mesh_proxy_source_dir`."""
    build = tmp / "build-b"
    build.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, build / name)
    for name in ("proxy", "tools"):
        shutil.copytree(
            ROOT / name,
            build / name,
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"),
        )  # symlinks followed, as prepare.yml's tar -h does
    for name in ("pyproject.toml", "proxy/pyproject.toml", "tools/pyproject.toml"):
        path = build / name
        text = re.sub(r'(?m)^version = "([^"]+)"$', r'version = "\1.post1"', path.read_text())
        if name.startswith("tools/"):
            text = re.sub(r'"meshkit==([^"]+)"', r'"meshkit==\1.post1"', text)
        path.write_text(text)
    return build


def roll_windows(spec: LabSpec, paths: LabPaths, machine: str) -> list[tuple[float, float]]:
    """(replacing, ready) monotonic seconds of each step of the host parent's roll, from its
    journal (the lab machines share the host's monotonic clock)."""
    journal = f"journalctl -u {HOST_UNIT} --no-pager -o short-monotonic"
    lines = on(spec, paths, machine, f"{journal} | grep -E 'roll: (replacing|sidecar .* ready)'")
    stamps: list[tuple[float, str]] = []
    for line in lines.splitlines():
        found = re.match(r"\[\s*([0-9.]+)\]", line)
        assert found, line
        stamps.append((float(found.group(1)), "replacing" if "replacing" in line else "ready"))
    windows = []
    for (start, what), (end, then) in zip(stamps[::2], stamps[1::2], strict=True):
        assert (what, then) == ("replacing", "ready"), lines
        windows.append((start, end))
    return windows


def test_shared_model_under_systemd_and_back(
    mesh_lab: tuple[LabSpec, LabPaths], tmp_path: Path
) -> None:
    spec, paths = mesh_lab
    playbook(paths, tmp_path, "demo.yml")
    for machine, (sidecar_id, _) in SIDECARS.items():
        assert (
            on(spec, paths, machine, f"systemctl is-active meshkit-proxy@{sidecar_id}") == "active"
        )
    assert traffic_flows(spec, paths)

    # unit -> shared: one host unit per machine, its children the sidecars, no proxy@ unit left
    playbook(paths, tmp_path, "site.yml", "-e", "mesh_proxy_process_model=shared")
    for machine, (sidecar_id, _) in SIDECARS.items():
        assert on(spec, paths, machine, f"systemctl is-active {HOST_UNIT}") == "active"
        assert proxy_units(spec, paths, machine) == ""
        assert not exists(spec, paths, machine, "/etc/systemd/system/meshkit-proxy@.service")
        settle(f"{machine}'s sidecar ready", lambda m=machine: ready(spec, paths, m))  # type: ignore[misc]
        parent = on(spec, paths, machine, f"systemctl show -p MainPID --value {HOST_UNIT}")
        child = sidecar_pid(spec, paths, machine)
        assert on(spec, paths, machine, f"ps -o ppid= -p {child}").strip() == parent
        assert on(spec, paths, machine, f"cat /proc/{child}/comm") == f"mk:{sidecar_id}"[:15]
        assert on(spec, paths, machine, f"stat -c %U /proc/{child}") == "meshkit"
        journal = on(spec, paths, machine, f"journalctl -u {HOST_UNIT} --no-pager -o cat")
        assert f"[{sidecar_id}]" in journal, journal[-2000:]
    settle("traffic web -> db through the forked sidecars", lambda: traffic_flows(spec, paths))

    # a re-run of the same model changes nothing
    again = playbook(paths, tmp_path, "site.yml", "-e", "mesh_proxy_process_model=shared")
    assert changed_counts(again) == {"0"}, again[-3000:]

    # a killed sidecar is forked again by the parent; the other machine's is untouched
    before = {m: sidecar_pid(spec, paths, m) for m in SIDECARS}
    on(spec, paths, "db", f"kill -9 {before['db']}")
    settle(
        "db's sidecar forked again",
        lambda: (
            run(spec, paths, "db", f"cat {RUN_DIR}/db-db.pid").stdout.strip()
            not in ("", before["db"])
        ),
    )
    settle("db's new sidecar ready", lambda: ready(spec, paths, "db"))
    assert sidecar_pid(spec, paths, "web") == before["web"]
    settle("traffic after the restart", lambda: traffic_flows(spec, paths))

    # a changed env file on web reaches the parent by the role's reload: only web's sidecar
    # restarts (a new log level in MESHKIT_PROXY_ARGS, from a host_vars layer for web only)
    override = tmp_path / "override"
    (override / "host_vars").mkdir(parents=True)
    (override / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {"web": {}}}}))
    (override / "host_vars" / "web.yml").write_text(
        yaml.safe_dump({"mesh_proxy_log_level": "debug"})
    )
    before = {m: sidecar_pid(spec, paths, m) for m in SIDECARS}
    playbook(paths, tmp_path, "site.yml", "-e", "mesh_proxy_process_model=shared",
             "-i", str(override))  # fmt: skip
    assert "-log-level debug" in on(spec, paths, "web", "cat /etc/meshkit/proxy/web-web.env")
    assert sidecar_pid(spec, paths, "web") != before["web"]
    assert sidecar_pid(spec, paths, "db") == before["db"]
    settle("traffic after the reload", lambda: traffic_flows(spec, paths))

    # a new release under a client loop: each host's parent upgrades in place (SIGUSR2, the
    # same MainPID), its sidecar replaced and ready before the next host's; no request lost
    machines = ("cp", *SIDECARS)  # cp runs db's second sidecar (db-cp)
    main_pids = {
        m: on(spec, paths, m, f"systemctl show -p MainPID --value {HOST_UNIT}") for m in machines
    }
    pid_files = {m: on(spec, paths, m, f"cat {RUN_DIR}/*.pid") for m in machines}
    upgrade_start = float(
        on(spec, paths, "web", "python3 -c 'import time; print(time.monotonic())'")
    )
    client = base64.b64encode((ROOT / "molecule/resources/files/client_loop.py").read_bytes())
    on(spec, paths, "web", f"echo {client.decode()} | base64 -d > /root/client_loop.py && "
                           "rm -f /root/upgrade-loop.json /root/upgrade-loop.stop && "
                           "systemd-run --unit=meshkit-upgrade-client --collect /usr/bin/python3 "
                           "/root/client_loop.py --url http://127.0.0.1:9192/ "
                           "--out /root/upgrade-loop.json --stop-file /root/upgrade-loop.stop "
                           "--max-seconds 600")  # fmt: skip
    playbook(paths, tmp_path, "site.yml", "-e", "mesh_proxy_process_model=shared",
             "-e", f"mesh_proxy_source_dir={build_b(tmp_path)}", "-i", str(override))  # fmt: skip
    on(spec, paths, "web", "sleep 3; touch /root/upgrade-loop.stop")
    settle("the client's summary", lambda: exists(spec, paths, "web", "/root/upgrade-loop.json"))
    summary = json.loads(on(spec, paths, "web", "cat /root/upgrade-loop.json"))
    assert summary["lost"] == 0 and summary["ok"] >= 20, summary
    windows: list[tuple[float, float]] = []
    for machine in machines:
        assert ".post1-" in on(spec, paths, machine, "readlink /opt/meshkit/current")
        main_pid = on(spec, paths, machine, f"systemctl show -p MainPID --value {HOST_UNIT}")
        assert main_pid == main_pids[machine], machine
        new = on(spec, paths, machine, f"cat {RUN_DIR}/*.pid")
        assert not set(new.split()) & set(pid_files[machine].split()), (machine, new)
        journal = on(spec, paths, machine, f"journalctl -u {HOST_UNIT} --no-pager -o cat")
        assert "SIGUSR2: upgrading in place" in journal and "upgrade: adopted 1 " in journal
        windows += [w for w in roll_windows(spec, paths, machine) if w[0] > upgrade_start]
    windows.sort()
    print(f"client loop during the upgrade: {summary}; roll steps (monotonic s): {windows}")
    assert len(windows) == len(machines), windows
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(windows)), windows  # one at a time
    settle("traffic after the upgrade", lambda: traffic_flows(spec, paths))

    # shared -> unit: the per-sidecar units again, the host unit gone
    playbook(paths, tmp_path, "site.yml")
    for machine, (sidecar_id, _) in SIDECARS.items():
        assert (
            on(spec, paths, machine, f"systemctl is-active meshkit-proxy@{sidecar_id}") == "active"
        )
        assert (
            run(spec, paths, machine, f"systemctl is-active {HOST_UNIT}").stdout.strip() != "active"
        )
        assert not exists(spec, paths, machine, f"/etc/systemd/system/{HOST_UNIT}")
    settle("traffic through the per-sidecar units again", lambda: traffic_flows(spec, paths))
