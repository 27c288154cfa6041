# SPDX-License-Identifier: MPL-2.0
"""Where a lab's pieces live; every name derives from the lab name so `down` needs no state file.

Interface names are limited to 15 bytes, so they carry a short hash of the lab name.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

STATE_ROOT = Path(os.environ.get("MESHKIT_LAB_STATE", "/run/meshkit-lab"))
CACHE_ROOT = Path(os.environ.get("MESHKIT_LAB_CACHE", "/var/cache/meshkit"))
CGROUP_ROOTS = (Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified"))
CGROUP_DIR = "meshkit-lab"


def lab_tag(lab: str) -> str:
    return hashlib.sha256(lab.encode()).hexdigest()[:6]


@dataclass(frozen=True)
class LabPaths:
    lab: str
    base: Path | None = None  # default STATE_ROOT (tests point it elsewhere)

    @property
    def state(self) -> Path:
        return (self.base or STATE_ROOT) / self.lab

    @property
    def state_file(self) -> Path:
        return self.state / "lab.json"

    @property
    def key(self) -> Path:
        return self.state / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state / "known_hosts"

    @property
    def inventory(self) -> Path:
        return self.state / "hosts.yml"

    @property
    def ssh_wrapper(self) -> Path:
        return self.state / "ssh"

    @property
    def ssh_control_dir(self) -> Path:
        return self.state / "cp"

    def machine_dir(self, machine: str) -> Path:
        return self.state / "machines" / machine

    def root(self, machine: str) -> Path:
        return self.machine_dir(machine) / "root"

    def console_log(self, machine: str) -> Path:
        return self.machine_dir(machine) / "console.log"

    def pid_file(self, machine: str) -> Path:
        return self.machine_dir(machine) / "nspawn.pid"

    @property
    def netns_prefix(self) -> str:
        return f"meshkit-{self.lab}-"

    def netns(self, machine: str) -> str:
        return f"{self.netns_prefix}{machine}"

    @property
    def gateway_netns(self) -> str:
        """The isolated lab's own 'host' namespace (holds the bridge and 198.18.0.1)."""
        return f"{self.netns_prefix}-gw"  # machine names cannot start with "-"

    @property
    def bridge(self) -> str:
        return f"mkb{lab_tag(self.lab)}"

    @property
    def veth_prefix(self) -> str:
        return f"mkv{lab_tag(self.lab)}"

    def veth(self, index: int) -> str:
        return f"{self.veth_prefix}x{index}"

    def cgroup(self, root: Path, machine: str | None = None) -> Path:
        base = root / CGROUP_DIR / self.lab
        return base if machine is None else base / machine

    def machine_name(self, machine: str) -> str:
        return f"{self.lab}-{machine}"
