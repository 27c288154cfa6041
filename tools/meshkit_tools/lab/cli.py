# SPDX-License-Identifier: MPL-2.0
"""`meshkit lab up|down|status|ssh|inventory`: argument parsing at the boundary, exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from meshkit_tools.lab import access, lab, proc
from meshkit_tools.lab.errors import LabError
from meshkit_tools.lab.paths import LabPaths
from meshkit_tools.lab.spec import (
    DEFAULT_GROUPS,
    DEFAULT_MACHINES,
    DEFAULT_PARENTS,
    LabSpec,
    build_spec,
    check_lab_name,
    load_scenario,
    parse_groups,
    parse_machines,
)

DEFAULT_LAB = os.environ.get("MESHKIT_LAB", "lab")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="meshkit lab",
        description="Local lab machines: Debian booted by systemd-nspawn, one network namespace "
        "each, on 198.18.0.0/24 (see docs/lab.md).",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="print every host command")
    sub = p.add_subparsers(dest="command", required=True)

    def named(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--name", default=DEFAULT_LAB, help=f"lab name (default {DEFAULT_LAB})")

    u = sub.add_parser("up", help="build the image once, boot the machines, write the inventory")
    named(u)
    u.add_argument("--machines", help="comma-separated names, addresses .10, .11, ... in order")
    u.add_argument("--groups", help="'group=m1,m2;group2=m3' (default: the mesh lab groups)")
    u.add_argument("--children", help="'parent=group1,group2;...' (default: mesh_hosts=web,db)")
    u.add_argument("--scenario", type=Path, help="YAML file with machines/groups/children")
    u.add_argument(
        "--isolated",
        action="store_true",
        default=os.environ.get("MESHKIT_LAB_ISOLATED") == "1",
        help="bridge in the lab's own namespace (several labs at once; SSH via a relay); "
        "default from MESHKIT_LAB_ISOLATED=1",
    )
    u.add_argument("--recreate", action="store_true", help="tear an existing lab down first")
    u.add_argument(
        "--keep-on-failure", action="store_true", help="leave a failed lab in place for inspection"
    )

    d = sub.add_parser("down", help="stop the machines and remove every part of the lab")
    named(d)
    d.add_argument("--all", action="store_true", help="every lab with state on this host")

    s = sub.add_parser("status", help="machines, addresses, systemd state")
    named(s)

    i = sub.add_parser("inventory", help="print the path of the lab's Ansible inventory")
    named(i)

    x = sub.add_parser("ssh", help="ssh to a machine (extra arguments run as a command)")
    named(x)
    x.add_argument("machine")
    x.add_argument("cmd", nargs=argparse.REMAINDER)
    return p


def spec_from_args(args: argparse.Namespace) -> LabSpec:
    name = check_lab_name(args.name)
    if args.scenario is not None:
        if args.machines or args.groups or args.children:
            raise LabError(
                "--scenario replaces --machines/--groups/--children; give one or the other"
            )
        return load_scenario(args.scenario, name=args.name, isolated=args.isolated)
    if args.machines is None:
        machines: tuple[str, ...] = DEFAULT_MACHINES
        groups = dict(DEFAULT_GROUPS) if args.groups is None else parse_groups(args.groups)
        children = dict(DEFAULT_PARENTS) if args.children is None else parse_groups(args.children)
    else:
        machines = parse_machines(args.machines)
        groups = {} if args.groups is None else parse_groups(args.groups)
        children = {} if args.children is None else parse_groups(args.children, source="--children")
    return build_spec(name, machines, groups, children, isolated=args.isolated)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    proc.VERBOSE = args.verbose
    try:
        return _dispatch(args)
    except LabError as exc:
        print(f"meshkit lab: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("meshkit lab: interrupted", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "up":
        spec = spec_from_args(args)
        paths = lab.up(spec, recreate=args.recreate, keep_on_failure=args.keep_on_failure)
        print_summary(spec, paths)
        return 0
    if args.command == "down":
        names = lab.known_labs() if args.all else [check_lab_name(args.name)]
        lab.check_prerequisites(need_debootstrap=False)
        problems = [p for n in names for p in lab.down(n)]
        return 1 if problems else 0
    if args.command == "status":
        return print_status(check_lab_name(args.name))
    if args.command == "inventory":
        paths = LabPaths(check_lab_name(args.name))
        if not paths.inventory.exists():
            raise LabError(f"lab {args.name!r} is not up (`meshkit lab up --name {args.name}`)")
        print(paths.inventory)
        return 0
    if args.command == "ssh":
        loaded = lab.load_state(LabPaths(check_lab_name(args.name)))
        if loaded is None:
            raise LabError(f"lab {args.name!r} is not up (`meshkit lab up --name {args.name}`)")
        spec, _ = loaded
        interactive = sys.stdin.isatty() and not args.cmd
        argv = access.ssh_argv(
            spec, LabPaths(spec.name), spec.machine(args.machine), *args.cmd, batch=not interactive
        )
        os.execvp(argv[0], argv)
    raise LabError(f"unknown command {args.command}")


def print_summary(spec: LabSpec, paths: LabPaths) -> None:
    print(f"lab {spec.name!r} is up{' (isolated)' if spec.isolated else ''}:")
    for m in spec.machines:
        groups = [g for g, members in spec.groups.items() if m.name in members]
        print(f"  {m.name:<8} {m.address!s:<14} groups: {', '.join(groups) or '-'}")
    print(f"inventory:  {paths.inventory}")
    print(f"playbook:   ansible-playbook -i inventories/lab -i {paths.inventory} \\")
    print("              playbooks/site.yml")
    print(f"shell:      meshkit lab ssh --name {spec.name} {spec.machines[0].name}")
    print(f"tear down:  meshkit lab down --name {spec.name}")


def print_status(name: str) -> int:
    result = lab.status(name)
    if result is None:
        left = lab.leftovers(name)
        if left:
            print(f"lab {name!r}: no state, but leftovers: {'; '.join(left)}")
            print(f"remove them with: meshkit lab down --name {name}")
            return 1
        others = ", ".join(lab.known_labs()) or "none"
        print(f"lab {name!r} is not up (labs up: {others})")
        return 3
    spec, machines = result
    print(
        f"lab {spec.name!r}{' (isolated)' if spec.isolated else ''}, "
        f"inventory {LabPaths(name).inventory}"
    )
    print(f"  {'machine':<10}{'address':<15}{'nspawn':<9}systemd")
    for m in machines:
        print(f"  {m.name:<10}{m.address:<15}{'running' if m.running else 'stopped':<9}{m.system}")
    return 0 if all(m.running and m.system in ("running", "degraded") for m in machines) else 1
