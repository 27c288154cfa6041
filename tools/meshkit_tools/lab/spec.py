# SPDX-License-Identifier: MPL-2.0
"""Lab description: which machines, their addresses and Ansible groups, parsed once into types.

Machines get 198.18.0.10, .11, ... in the order given; the host (or the lab's gateway namespace)
is 198.18.0.1. Names and groups are validated here so nothing half-builds on bad input.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from meshkit_tools.lab.errors import LabError

NETWORK = ipaddress.IPv4Network("198.18.0.0/24")
GATEWAY = ipaddress.IPv4Address("198.18.0.1")
FIRST_MACHINE = 10
MAX_MACHINES = 40

DEFAULT_MACHINES = ("cp", "web", "db")
# The inventory shape agreed with the roles (see docs/lab.md). Group names differ from machine
# names: Ansible warns "Found both group and host with same name" otherwise.
DEFAULT_GROUPS: dict[str, tuple[str, ...]] = {
    "mesh_control": ("cp",),
    "web_servers": ("web",),
    "db_servers": ("db", "cp"),
}
DEFAULT_PARENTS: dict[str, tuple[str, ...]] = {"mesh_hosts": ("web_servers", "db_servers")}

_LAB_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_MACHINE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,14}$")
_GROUP_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class Machine:
    name: str
    address: ipaddress.IPv4Address
    index: int


@dataclass(frozen=True)
class LabSpec:
    name: str
    machines: tuple[Machine, ...]
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    parents: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    isolated: bool = False

    def machine(self, name: str) -> Machine:
        for m in self.machines:
            if m.name == name:
                return m
        known = ", ".join(m.name for m in self.machines)
        raise LabError(f"lab {self.name!r} has no machine {name!r} (machines: {known})")


def check_lab_name(name: str) -> str:
    if not _LAB_NAME.match(name):
        raise LabError(
            f"lab name {name!r} is invalid: use 1-20 lower-case letters, digits or dashes, "
            "starting with a letter (e.g. --name lab)"
        )
    return name


def parse_machines(text: str, *, source: str = "--machines") -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    return _check_machine_names(names, source)


def _check_machine_names(names: Sequence[str], source: str) -> tuple[str, ...]:
    if not names:
        raise LabError(f"{source}: no machine names given (e.g. --machines cp,web,db)")
    if len(names) > MAX_MACHINES:
        raise LabError(f"{source}: {len(names)} machines; at most {MAX_MACHINES}")
    for n in names:
        if not _MACHINE_NAME.match(n):
            raise LabError(
                f"{source}: machine name {n!r} is invalid: use 1-15 lower-case letters, "
                "digits or dashes, starting with a letter"
            )
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise LabError(f"{source}: machine names repeat: {', '.join(dup)}")
    return tuple(names)


def parse_groups(text: str, *, source: str = "--groups") -> dict[str, tuple[str, ...]]:
    """`'mesh_control=cp;web=web;db=db,cp'` → {group: members}."""
    groups: dict[str, tuple[str, ...]] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        group, sep, members = part.partition("=")
        if not sep:
            raise LabError(f"{source}: {part!r} is not GROUP=MACHINE[,MACHINE...]")
        groups[group.strip()] = tuple(m.strip() for m in members.split(",") if m.strip())
    return groups


def build_spec(
    name: str,
    machine_names: Sequence[str],
    groups: Mapping[str, Sequence[str]] | None = None,
    parents: Mapping[str, Sequence[str]] | None = None,
    *,
    isolated: bool = False,
    source: str = "arguments",
) -> LabSpec:
    check_lab_name(name)
    names = _check_machine_names(list(machine_names), source)
    machines = tuple(
        Machine(n, NETWORK.network_address + FIRST_MACHINE + i, i) for i, n in enumerate(names)
    )
    g = {k: tuple(v) for k, v in (groups or {}).items()}
    p = {k: tuple(v) for k, v in (parents or {}).items()}
    for group, members in g.items():
        if not _GROUP_NAME.match(group):
            raise LabError(f"{source}: group name {group!r} is invalid (letters, digits, _)")
        unknown = [m for m in members if m not in names]
        if unknown:
            raise LabError(
                f"{source}: group {group!r} names unknown machines {', '.join(unknown)} "
                f"(machines: {', '.join(names)})"
            )
    for group, children in p.items():
        if not _GROUP_NAME.match(group):
            raise LabError(f"{source}: group name {group!r} is invalid (letters, digits, _)")
        if group in g:
            raise LabError(f"{source}: group {group!r} has both hosts and children")
        missing = [c for c in children if c not in g and c not in p]
        if missing:
            raise LabError(f"{source}: group {group!r} has unknown child groups {missing}")
    return LabSpec(name=name, machines=machines, groups=g, parents=p, isolated=isolated)


def default_spec(name: str, *, isolated: bool = False) -> LabSpec:
    return build_spec(name, DEFAULT_MACHINES, DEFAULT_GROUPS, DEFAULT_PARENTS, isolated=isolated)


def load_scenario(path: Path, *, name: str | None = None, isolated: bool = False) -> LabSpec:
    """A scenario file: `{name: lab, machines: [cp, web], groups: {g: [cp]}, children: {...}}`."""
    try:
        data: Any = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise LabError(f"{path}: cannot read scenario file: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise LabError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise LabError(f"{path}: expected a mapping with 'machines' (and 'groups', 'children')")
    unknown = sorted(set(data) - {"name", "machines", "groups", "children", "isolated"})
    if unknown:
        raise LabError(f"{path}: unknown field(s) {', '.join(unknown)}")
    machines = data.get("machines")
    if not isinstance(machines, list) or not all(isinstance(m, str) for m in machines):
        raise LabError(f"{path}: field 'machines' must be a list of names, e.g. [cp, web, db]")
    groups = _str_lists(data.get("groups") or {}, path, "groups")
    children = _str_lists(data.get("children") or {}, path, "children")
    lab = name or data.get("name") or "lab"
    if not isinstance(lab, str):
        raise LabError(f"{path}: field 'name' must be a string")
    iso = bool(data.get("isolated", False)) or isolated
    return build_spec(lab, machines, groups, children, isolated=iso, source=str(path))


def _str_lists(value: Any, path: Path, fld: str) -> dict[str, list[str]]:
    if not isinstance(value, dict) or not all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in value.values()
    ):
        raise LabError(f"{path}: field {fld!r} must map group names to lists of names")
    return {str(k): list(v) for k, v in value.items()}
