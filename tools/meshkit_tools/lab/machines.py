# SPDX-License-Identifier: MPL-2.0
"""One machine: an overlay over the cached image, booted by systemd-nspawn in its own cgroup.

PID 1 of this host is not systemd, so nothing would give each nspawn a cgroup of its own: two
nspawns started from one cgroup collide on its `payload`/`supervisor` children. We create
`meshkit-lab/<lab>/<machine>` in every mounted hierarchy and start nspawn inside it; that also
gives teardown a complete list of the machine's processes to stop.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from meshkit_tools.lab.errors import LabError
from meshkit_tools.lab.paths import CGROUP_DIR, CGROUP_ROOTS, LabPaths
from meshkit_tools.lab.proc import ok, run
from meshkit_tools.lab.spec import LabSpec


def cgroup_roots() -> list[Path]:
    """Mounted hierarchies to place machines in: unified-only hosts have one, hybrid hosts two."""
    unified_only = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    if unified_only:
        return [Path("/sys/fs/cgroup")]
    return [r for r in CGROUP_ROOTS if (r / "cgroup.procs").exists()]


def mount_root(image_root: Path, paths: LabPaths, name: str) -> str:
    """Overlay the image (milliseconds, shares the page cache); a full copy if overlay fails."""
    mdir = paths.machine_dir(name)
    upper, work, root = mdir / "upper", mdir / "work", paths.root(name)
    for d in (upper, work, root):
        d.mkdir(parents=True, exist_ok=True)
    opts = f"lowerdir={image_root},upperdir={upper},workdir={work}"
    res = run(["mount", "-t", "overlay", "overlay", "-o", opts, str(root)], check=False)
    if res.returncode == 0:
        return "overlay"
    root.rmdir()
    run(["cp", "-a", "--reflink=auto", str(image_root), str(root)], timeout=600)
    return "copy"


def personalise(spec: LabSpec, paths: LabPaths, name: str, public_key: str) -> None:
    """Give the machine its own name, machine-id, SSH host key, the lab key and /etc/hosts."""
    root = paths.root(name)
    (root / "etc" / "hostname").write_text(name + "\n")
    (root / "etc" / "machine-id").write_text(uuid.uuid4().hex + "\n")
    hosts = ["127.0.0.1 localhost", f"127.0.1.1 {name}", "::1 localhost ip6-localhost"]
    hosts += [f"{m.address} {m.name}" for m in spec.machines]
    (root / "etc" / "hosts").write_text("\n".join(hosts) + "\n")
    ssh_dir = root / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    auth = ssh_dir / "authorized_keys"
    auth.write_text(public_key.strip() + "\n")
    auth.chmod(0o600)
    host_key = root / "etc" / "ssh" / "ssh_host_ed25519_key"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(host_key)])


def start(spec: LabSpec, paths: LabPaths, name: str) -> int:
    cgroups = [paths.cgroup(r, name) for r in cgroup_roots()]
    for cg in cgroups:
        cg.mkdir(parents=True, exist_ok=True)
    argv = [
        "systemd-nspawn",
        "--boot",
        "--register=no",  # no systemd-machined here (PID 1 is not systemd)
        "--keep-unit",  # stay in the cgroup we made instead of asking systemd for a scope
        f"--directory={paths.root(name)}",
        f"--machine={paths.machine_name(name)}",
        f"--hostname={name}",
        f"--network-namespace-path=/run/netns/{paths.netns(name)}",
        # nspawn drops CAP_NET_ADMIN by default; the machine's network is its own namespace,
        # so it may manage it (nftables of the loopback guard, `ip`).
        "--capability=CAP_NET_ADMIN",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        "--console=read-only",
    ]

    def join_cgroups() -> None:
        for cg in cgroups:
            (cg / "cgroup.procs").write_text("0\n")

    log = paths.console_log(name).open("ab")
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=join_cgroups,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise LabError(f"cannot start systemd-nspawn for {name}: {exc}") from exc
    finally:
        log.close()
    paths.pid_file(name).write_text(f"{proc.pid}\n")
    return proc.pid


def _walk(cg: Path) -> Iterator[Path]:
    if not cg.is_dir():
        return
    for child in sorted(p for p in cg.iterdir() if p.is_dir()):
        yield from _walk(child)
    yield cg


def cgroup_pids(cg: Path) -> list[int]:
    pids: list[int] = []
    for d in _walk(cg):
        try:
            pids += [int(p) for p in (d / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            continue
    return pids


def lab_cgroups(paths: LabPaths, name: str | None = None) -> list[Path]:
    return [paths.cgroup(r, name) for r in cgroup_roots() if paths.cgroup(r, name).exists()]


def running_pids(paths: LabPaths, name: str | None = None) -> list[int]:
    pids: set[int] = set()
    for cg in lab_cgroups(paths, name):
        pids.update(cgroup_pids(cg))
    return sorted(pids)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _signal(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _reap(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def stop_all(paths: LabPaths, *, grace: float = 20.0) -> list[str]:
    """Ask every nspawn of the lab to shut its machine down, then kill what is left.

    SIGTERM to systemd-nspawn becomes a clean poweroff of the machine's systemd; after the grace
    period every process still in the lab's cgroups gets SIGKILL. Returns what stayed behind.
    """
    pids = running_pids(paths)
    nspawns = [p for p in pids if _comm(p) == "systemd-nspawn"]
    _signal(nspawns, signal.SIGTERM)
    deadline = time.monotonic() + grace
    # Wait while a supervisor is still shutting its machine down; a machine whose nspawn died
    # (a crash) has nobody to power it off, so its processes go straight to SIGKILL below.
    while time.monotonic() < deadline:
        _reap(nspawns)
        if not any(_comm(p) == "systemd-nspawn" for p in running_pids(paths)):
            break
        time.sleep(0.2)
    for _ in range(50):  # bounded: 50 rounds of SIGKILL, 0.1 s apart
        left = running_pids(paths)
        if not left:
            break
        _signal(left, signal.SIGKILL)
        _reap(left)
        time.sleep(0.1)
    problems = [f"process {p} ({_comm(p)})" for p in running_pids(paths)]
    for root in cgroup_roots():
        base = paths.cgroup(root)
        for d in _walk(base):
            try:
                d.rmdir()
            except OSError:
                problems.append(f"cgroup {d}")
        parent = root / CGROUP_DIR
        if parent.is_dir() and not any(p.is_dir() for p in parent.iterdir()):
            with contextlib.suppress(OSError):
                parent.rmdir()
    return problems


def lab_mounts(paths: LabPaths) -> list[str]:
    prefix = str(paths.state) + "/"
    found: list[str] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4].replace("\\040", " ")
        if target.startswith(prefix):
            found.append(target)
    return found


def unmount_all(paths: LabPaths) -> list[str]:
    left: list[str] = []
    for target in sorted(lab_mounts(paths), key=len, reverse=True):
        if not ok(["umount", target]) and not ok(["umount", "-l", target]):
            left.append(f"mount {target}")
    return left


def remove_state(paths: LabPaths) -> list[str]:
    if lab_mounts(paths):
        return [f"state {paths.state} (still has mounts)"]
    shutil.rmtree(paths.state, ignore_errors=True)
    return [f"state {paths.state}"] if paths.state.exists() else []
