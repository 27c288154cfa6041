#!/usr/bin/python
# SPDX-License-Identifier: MPL-2.0
# Copyright: meshkit contributors
# MPL-2.0 (see the project's pyproject.toml)
"""Audit a host's listening TCP sockets: a proxied app must listen on loopback only.

Reads /proc (no ss/netstat/psutil needed on the host) so the audit works on minimal images.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: loopback_audit
short_description: Fail when a proxied application listens on anything but loopback
version_added: 0.1.0
description:
  - Lists the host's listening TCP sockets (IPv4 and IPv6) with their owning process, read from
    C(/proc/net/tcp), C(/proc/net/tcp6) and C(/proc/<pid>/fd).
  - For every proxied application named in O(services), fails if a socket on its port is bound
    to an address outside C(127.0.0.0/8) and C(::1), naming the process, pid, address and port.
  - Consul's documentation says a proxied service should only accept connections on a loopback
    address, so that traffic reaches it only through its sidecar (which enforces mTLS and
    intentions). This module checks that the host really does so after deployment.
  - Needs root (or C(CAP_SYS_PTRACE)) to name processes owned by other users; sockets whose
    owner cannot be read are reported with pid V(null).
author:
  - meshkit contributors (@meshkit)
extends_documentation_fragment:
  - meshkit.connect.attributes.INFO_MODULE
options:
  services:
    description:
      - The proxied applications to check.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Service name, used in messages.
        type: str
        required: true
      port:
        description: The application's port (the sidecar's C(local_service_port)).
        type: int
        required: true
      allow_non_loopback:
        description:
          - Documented escape hatch, per service; its sockets are listed but never a violation.
        type: bool
        default: false
  ports:
    description:
      - Extra ports to check, as a shorthand for services without a name.
    type: list
    elements: int
    default: []
  fail_on_violation:
    description:
      - Fail the task on a violation. With V(false), violations are only returned.
    type: bool
    default: true
notes:
  - Only sockets in the module's own network namespace are seen, which is the host's when the
    module runs there.
"""

EXAMPLES = r"""
- name: Proxied apps listen on loopback only
  meshkit.connect.loopback_audit:
    services:
      - {name: web, port: 8080}
      - {name: db, port: 5432}
  become: true

- name: Report without failing
  meshkit.connect.loopback_audit:
    ports: [8080]
    fail_on_violation: false
  register: audit
"""

RETURN = r"""
listeners:
  description: Every listening TCP socket on the audited ports.
  returned: always
  type: list
  elements: dict
  sample:
    - {service: web, address: 127.0.0.1, port: 8080, family: ipv4, pid: 812, process: python3,
       user: web, loopback: true}
violations:
  description: The listeners that break the rule, with a message each.
  returned: always
  type: list
  elements: dict
  sample:
    - {service: web, address: 0.0.0.0, port: 8080, family: ipv4, pid: 812, process: python3,
       user: web, loopback: false,
       message: "service web: process python3 (pid 812) listens on 0.0.0.0:8080 ..."}
all_listeners:
  description: Count of all listening TCP sockets on the host, audited ports or not.
  returned: always
  type: int
"""

import ipaddress
import os
import pwd
from dataclasses import asdict, dataclass
from typing import Any

from ansible.module_utils.basic import AnsibleModule

_LISTEN = "0A"


@dataclass(frozen=True)
class Socket:
    family: str
    address: str
    port: int
    inode: int
    uid: int


@dataclass(frozen=True)
class Owner:
    pid: int | None
    process: str


@dataclass(frozen=True)
class Target:
    service: str
    port: int
    allow_non_loopback: bool


def _ipv4(hex_addr: str) -> str:
    # /proc prints the address as a little-endian 32-bit number in hex.
    raw = bytes.fromhex(hex_addr)
    return str(ipaddress.IPv4Address(raw[::-1]))


def _ipv6(hex_addr: str) -> str:
    # Four 32-bit words, each in host (little-endian) byte order.
    raw = bytes.fromhex(hex_addr)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return str(ipaddress.IPv6Address(words))


def parse_proc_net(text: str, family: str) -> list[Socket]:
    """Listening sockets from the text of /proc/net/tcp or /proc/net/tcp6."""
    sockets = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != _LISTEN:
            continue
        hex_addr, hex_port = fields[1].split(":")
        address = _ipv4(hex_addr) if family == "ipv4" else _ipv6(hex_addr)
        sockets.append(Socket(family, address, int(hex_port, 16), int(fields[9]), int(fields[7])))
    return sockets


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def socket_owners(inodes: set[int], proc: str = "/proc") -> dict[int, Owner]:
    """Map socket inodes to the first process holding them (lowest pid wins)."""
    owners: dict[int, Owner] = {}
    if not inodes:
        return owners
    pids = sorted(int(entry) for entry in os.listdir(proc) if entry.isdigit())
    for pid in pids:
        fd_dir = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if not target.startswith("socket:["):
                continue
            inode = int(target[8:-1])
            if inode in inodes and inode not in owners:
                owners[inode] = Owner(pid, _process_name(proc, pid))
    return owners


def _process_name(proc: str, pid: int) -> str:
    try:
        with open(f"{proc}/{pid}/comm", encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return "?"


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def read_listeners(proc: str = "/proc") -> list[Socket]:
    sockets: list[Socket] = []
    for name, family in (("tcp", "ipv4"), ("tcp6", "ipv6")):
        try:
            with open(f"{proc}/net/{name}", encoding="ascii") as handle:
                sockets += parse_proc_net(handle.read(), family)
        except FileNotFoundError:
            continue  # a kernel without IPv6
    return sockets


def audit(targets: list[Target], sockets: list[Socket], owners: dict[int, Owner]) -> dict[str, Any]:
    by_port = {t.port: t for t in targets}
    listeners = []
    violations = []
    for sock in sorted(sockets, key=lambda s: (s.port, s.family, s.address)):
        target = by_port.get(sock.port)
        if target is None:
            continue
        owner = owners.get(sock.inode, Owner(None, "?"))
        entry: dict[str, Any] = {
            "service": target.service,
            **{k: v for k, v in asdict(sock).items() if k not in ("inode", "uid")},
            "pid": owner.pid,
            "process": owner.process,
            "user": _user(sock.uid),
            "loopback": is_loopback(sock.address),
        }
        listeners.append(entry)
        if not entry["loopback"] and not target.allow_non_loopback:
            host = f"[{sock.address}]" if sock.family == "ipv6" else sock.address
            pid = owner.pid if owner.pid is not None else "unknown"
            entry = dict(entry)
            entry["message"] = (
                f"service {target.service}: process {owner.process} (pid {pid}, user "
                f"{entry['user']}) listens on {host}:{sock.port}, not on loopback; bind the app to "
                f"127.0.0.1 (or ::1) so it is reached only through its meshkit-proxy, or set "
                f"allow_non_loopback: true on the service"
            )
            violations.append(entry)
    return {"listeners": listeners, "violations": violations, "all_listeners": len(sockets)}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "services": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "name": {"type": "str", "required": True},
                    "port": {"type": "int", "required": True},
                    "allow_non_loopback": {"type": "bool", "default": False},
                },
            },
            "ports": {"type": "list", "elements": "int", "default": []},
            "fail_on_violation": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    targets = [
        Target(s["name"], s["port"], s["allow_non_loopback"]) for s in module.params["services"]
    ]
    named = {t.port for t in targets}
    targets += [Target(f"port {p}", p, False) for p in module.params["ports"] if p not in named]
    for t in targets:
        if not 0 < t.port < 65536:
            module.fail_json(msg=f"services/ports: port {t.port} of {t.service} is not 1-65535")
    sockets = read_listeners()
    wanted = {s.inode for s in sockets if s.port in {t.port for t in targets}}
    result = audit(targets, sockets, socket_owners(wanted))
    if result["violations"] and module.params["fail_on_violation"]:
        module.fail_json(
            msg="; ".join(v["message"] for v in result["violations"]), changed=False, **result
        )
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
