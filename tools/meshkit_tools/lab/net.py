# SPDX-License-Identifier: MPL-2.0
"""The lab network: a bridge holding 198.18.0.1 and one namespace + veth per machine.

Host mode puts the bridge in the host's namespace (Ansible reaches 198.18.0.x directly);
isolated mode puts it in the lab's own gateway namespace so two labs can use the same addresses.
Machines get only the connected /24 route: no default route, no way out.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

from meshkit_tools.lab.errors import LabError
from meshkit_tools.lab.paths import STATE_ROOT, LabPaths
from meshkit_tools.lab.proc import ok, run
from meshkit_tools.lab.spec import GATEWAY, NETWORK, LabSpec


def _ip(ns: str | None) -> list[str]:
    return ["ip", "-n", ns] if ns else ["ip"]


def list_netns() -> list[str]:
    res = run(["ip", "-j", "netns", "list"], check=False)
    if res.returncode != 0 or not res.stdout.strip():
        return []
    return [str(e["name"]) for e in json.loads(res.stdout)]


def links(ns: str | None = None) -> list[str]:
    res = run([*_ip(ns), "-j", "link", "show"], check=False)
    if res.returncode != 0 or not res.stdout.strip():
        return []
    return [str(e["ifname"]) for e in json.loads(res.stdout)]


def gateway_holder() -> str | None:
    """The host interface already holding 198.18.0.1, if any (another host-mode lab)."""
    res = run(["ip", "-j", "-4", "addr", "show"], check=False)
    if res.returncode != 0 or not res.stdout.strip():
        return None
    for entry in json.loads(res.stdout):
        for addr in entry.get("addr_info", []):
            if addr.get("local") == str(GATEWAY):
                return str(entry["ifname"])
    return None


def lab_of_bridge(bridge: str) -> str | None:
    for state in sorted(STATE_ROOT.glob("*/lab.json")):
        if LabPaths(state.parent.name).bridge == bridge:
            return state.parent.name
    return None


def check_gateway_free() -> None:
    """Host mode needs 198.18.0.1 on the host: refuse early, naming the lab that holds it."""
    holder = gateway_holder()
    if holder is not None:
        other = lab_of_bridge(holder)
        who = f"lab {other!r}" if other else f"interface {holder}"
        fix = f"`meshkit lab down --name {other}`" if other else f"remove {GATEWAY} from {holder}"
        raise LabError(
            f"{GATEWAY} is already in use on this host by {who}: {fix}, "
            "or start this lab with --isolated (its own gateway namespace)"
        )


def create_switch(spec: LabSpec, paths: LabPaths) -> None:
    ns: str | None = None
    if spec.isolated:
        ns = paths.gateway_netns
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
    else:
        check_gateway_free()
    run([*_ip(ns), "link", "add", paths.bridge, "type", "bridge"])
    run([*_ip(ns), "addr", "add", f"{GATEWAY}/{NETWORK.prefixlen}", "dev", paths.bridge])
    run([*_ip(ns), "link", "set", paths.bridge, "up"])


def attach_machine(spec: LabSpec, paths: LabPaths, name: str) -> None:
    machine = spec.machine(name)
    ns = paths.netns(name)
    sw = paths.gateway_netns if spec.isolated else None
    veth = paths.veth(machine.index)
    run(["ip", "netns", "add", ns])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    run([*_ip(sw), "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
    run([*_ip(sw), "link", "set", veth, "master", paths.bridge, "up"])
    run(["ip", "-n", ns, "addr", "add", f"{machine.address}/{NETWORK.prefixlen}", "dev", "eth0"])
    run(["ip", "-n", ns, "link", "set", "eth0", "up"])


def netns_path(ns: str) -> Path:
    return Path("/run/netns") / ns


def lab_namespaces(paths: LabPaths) -> list[str]:
    return [n for n in list_netns() if n.startswith(paths.netns_prefix)]


def teardown(paths: LabPaths) -> list[str]:
    """Delete every namespace, veth and bridge of the lab; return what could not be removed."""
    left: list[str] = []
    for ns in lab_namespaces(paths):
        # Machines are gone by now (cgroups); what is left are SSH relays of isolated labs.
        for _ in range(20):  # bounded: 20 rounds, 0.1 s apart
            pids = [int(p) for p in run(["ip", "netns", "pids", ns], check=False).stdout.split()]
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        else:
            left.append(f"namespace {ns} still has processes")
        if not ok(["ip", "netns", "del", ns]):
            left.append(f"namespace {ns}")
    # A deleted namespace takes its veth peers with it asynchronously: retry, bounded.
    deadline = time.monotonic() + 5
    while True:
        mine = [ln for ln in links() if ln.startswith(paths.veth_prefix) or ln == paths.bridge]
        for link in mine:
            ok(["ip", "link", "del", link])
        if not mine or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    left += [f"link {ln}" for ln in mine]
    return left
