# SPDX-License-Identifier: MPL-2.0
"""`up`, `down` and `status` of a lab: the order of the steps and the cleanup on failure."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshkit_tools.lab import access, image, machines, net
from meshkit_tools.lab.errors import LabError
from meshkit_tools.lab.paths import STATE_ROOT, LabPaths
from meshkit_tools.lab.spec import LabSpec, build_spec

BOOT_TIMEOUT = float(os.environ.get("MESHKIT_LAB_BOOT_TIMEOUT", "90"))


def say(msg: str) -> None:
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def check_prerequisites(*, need_debootstrap: bool) -> None:
    if os.geteuid() != 0:
        raise LabError(
            "meshkit lab needs root (network namespaces, mounts, systemd-nspawn): run it as root "
            "or with sudo"
        )
    tools = {
        "systemd-nspawn": "systemd-container",
        "ip": "iproute2",
        "ssh": "openssh-client",
        "ssh-keygen": "openssh-client",
        "mount": "mount",
    }
    if need_debootstrap:
        tools["debootstrap"] = "debootstrap"
    missing = sorted({pkg for tool, pkg in tools.items() if shutil.which(tool) is None})
    if missing:
        raise LabError(
            f"missing Debian packages: {' '.join(missing)}; install them with "
            f"`apt-get install {' '.join(missing)}` (./run setup does it)"
        )
    if not machines.cgroup_roots():
        raise LabError("no cgroup hierarchy under /sys/fs/cgroup; systemd-nspawn needs one")


@dataclass(frozen=True)
class MachineStatus:
    name: str
    address: str
    running: bool
    system: str


def spec_to_json(spec: LabSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "machines": [m.name for m in spec.machines],
        "groups": {k: list(v) for k, v in spec.groups.items()},
        "children": {k: list(v) for k, v in spec.parents.items()},
        "isolated": spec.isolated,
    }


def load_state(paths: LabPaths) -> tuple[LabSpec, dict[str, Any]] | None:
    try:
        data = json.loads(paths.state_file.read_text())
        spec = build_spec(
            data["spec"]["name"],
            data["spec"]["machines"],
            data["spec"]["groups"],
            data["spec"]["children"],
            isolated=bool(data["spec"]["isolated"]),
            source=str(paths.state_file),
        )
    except (OSError, ValueError, KeyError, TypeError, LabError):
        return None
    return spec, data


def machine_alive(paths: LabPaths, name: str) -> bool:
    return bool(machines.running_pids(paths, name))


def up(spec: LabSpec, *, recreate: bool = False, keep_on_failure: bool = False) -> LabPaths:
    paths = LabPaths(spec.name)
    check_prerequisites(need_debootstrap=not image.image_cached())
    existing = load_state(paths)
    if existing is not None and not recreate:
        old, _ = existing
        if spec_to_json(old) == spec_to_json(spec) and all(
            machine_alive(paths, m.name) for m in spec.machines
        ):
            access.wait_for_ssh(spec, paths, timeout=30, alive=lambda n: machine_alive(paths, n))
            say(f"lab {spec.name!r} is already up")
            return paths
        raise LabError(
            f"lab {spec.name!r} already exists with other machines or a stopped machine; "
            f"`meshkit lab down --name {spec.name}` first (or pass --recreate)"
        )
    if existing is not None or paths.state.exists() or net.lab_namespaces(paths):
        down(spec.name, quiet=True)  # a stopped, crashed or --recreate'd lab of this name
    if not spec.isolated:
        net.check_gateway_free()
    started = time.monotonic()
    img = image.ensure_image()
    paths.state.mkdir(parents=True, exist_ok=True)
    paths.state.chmod(0o700)
    try:
        _build(spec, paths, img)
    except BaseException:
        if keep_on_failure:
            say(
                f"left lab {spec.name!r} as it is for inspection; `meshkit lab down --name "
                f"{spec.name}` removes it"
            )
        else:
            say(f"lab {spec.name!r} failed to come up; removing what was built")
            down(spec.name, quiet=True)
        raise
    say(f"lab {spec.name!r} up in {time.monotonic() - started:.1f}s")
    return paths


def _build(spec: LabSpec, paths: LabPaths, img: image.Image) -> None:
    paths.state_file.write_text(
        json.dumps({"spec": spec_to_json(spec), "image": str(img.root), "created": time.time()})
    )
    public_key = access.make_key(paths)
    access.write_access_files(spec, paths)
    net.create_switch(spec, paths)
    t0 = time.monotonic()
    kinds = set()
    for m in spec.machines:
        kinds.add(machines.mount_root(img.root, paths, m.name))
        machines.personalise(spec, paths, m.name, public_key)
        net.attach_machine(spec, paths, m.name)
    say(
        f"{len(spec.machines)} roots ({'/'.join(sorted(kinds))}) and namespaces ready in "
        f"{time.monotonic() - t0:.1f}s; booting {', '.join(m.name for m in spec.machines)}"
    )
    for m in spec.machines:
        machines.start(spec, paths, m.name)
    t1 = time.monotonic()
    access.wait_for_ssh(spec, paths, timeout=BOOT_TIMEOUT, alive=lambda n: machine_alive(paths, n))
    states = {
        m.name: access.system_state(spec, paths, m, wait=max(5.0, BOOT_TIMEOUT / 3))
        for m in spec.machines
    }
    bad = {n: s for n, s in states.items() if s not in ("running", "degraded")}
    if bad:
        raise LabError(
            "machines did not finish booting: "
            + ", ".join(f"{n}={s}" for n, s in bad.items())
            + f"; console logs under {paths.state}/machines/"
        )
    say(
        f"sshd answers on all machines after {time.monotonic() - t1:.1f}s "
        f"({', '.join(f'{n}: {s}' for n, s in states.items())})"
    )


def down(name: str, *, quiet: bool = False) -> list[str]:
    """Remove every part of the lab, whatever state it is in; return what could not be removed."""
    paths = LabPaths(name)
    started = time.monotonic()
    access.close_masters(paths)
    problems = machines.stop_all(paths)
    problems += net.teardown(paths)
    problems += machines.unmount_all(paths)
    problems += machines.remove_state(paths)
    if not quiet:
        if problems:
            say("could not remove: " + "; ".join(problems))
        else:
            say(f"lab {name!r} is down ({time.monotonic() - started:.1f}s)")
    return problems


def leftovers(name: str) -> list[str]:
    """What of the lab still exists on the host (the teardown tests assert this is empty)."""
    paths = LabPaths(name)
    found = [f"process {p}" for p in machines.running_pids(paths)]
    found += [f"cgroup {c}" for c in machines.lab_cgroups(paths)]
    found += [f"namespace {n}" for n in net.lab_namespaces(paths)]
    found += [
        f"link {link}"
        for link in net.links()
        if link == paths.bridge or link.startswith(paths.veth_prefix)
    ]
    found += [f"mount {m}" for m in machines.lab_mounts(paths)]
    if paths.state.exists():
        found.append(f"state {paths.state}")
    return found


def status(name: str) -> tuple[LabSpec, list[MachineStatus]] | None:
    paths = LabPaths(name)
    loaded = load_state(paths)
    if loaded is None:
        return None
    spec, _ = loaded
    result = []
    for m in spec.machines:
        alive = machine_alive(paths, m.name)
        system = access.system_state(spec, paths, m) if alive else "stopped"
        result.append(MachineStatus(m.name, str(m.address), alive, system))
    return spec, result


def known_labs() -> list[str]:
    if not STATE_ROOT.exists():
        return []
    return sorted(p.parent.name for p in STATE_ROOT.glob("*/lab.json"))


def state_path(name: str) -> Path:
    return LabPaths(name).state
