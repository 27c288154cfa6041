# SPDX-License-Identifier: MPL-2.0
"""`meshkit demo`: the README's main command. Lab machines, the mesh rolled out, proof it works.

Boots the lab (cp, web, db), runs `playbooks/demo.yml` with ansible-playbook against it, then
shows one request from web through its upstream to db's app over the mesh and a direct
connection to db's app port from web that is dropped, and leaves the lab running.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from meshkit_tools.lab import access, lab
from meshkit_tools.lab.cli import DEFAULT_LAB
from meshkit_tools.lab.errors import LabError
from meshkit_tools.lab.paths import LabPaths
from meshkit_tools.lab.spec import LabSpec, check_lab_name, default_spec

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DemoShape:
    """Where the demo's traffic goes, read from the lab inventory's mesh model."""

    upstream_port: int
    upstream_name: str
    db_port: int


def read_shape(inventory_dir: Path) -> DemoShape:
    gv = inventory_dir / "group_vars"
    try:
        web: Any = yaml.safe_load((gv / "web_servers.yml").read_text())
        db: Any = yaml.safe_load((gv / "db_servers.yml").read_text())
        upstream = web["meshkit_services"][0]["sidecar"]["upstreams"][0]
        return DemoShape(
            upstream_port=int(upstream["local_bind_port"]),
            upstream_name=str(upstream["destination_name"]),
            db_port=int(db["meshkit_services"][0]["port"]),
        )
    except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise LabError(
            f"{gv}: cannot read the demo's web upstream and db port from web_servers.yml/"
            "db_servers.yml "
            f"(meshkit_services[0].sidecar.upstreams[0].local_bind_port, "
            f"meshkit_services[0].port): {exc!r}"
        ) from exc


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m", flush=True)


def run_playbook(spec: LabSpec, paths: LabPaths, inventory_dir: Path, playbook: Path) -> None:
    venv_bin = Path(sys.executable).parent
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_DEPRECATION_WARNINGS": "false",
    }
    argv = [str(venv_bin / "ansible-playbook"), "-i", str(inventory_dir), "-i",
            str(paths.inventory), str(playbook)]  # fmt: skip
    print("$ " + shlex.join(argv), flush=True)
    res = subprocess.run(argv, cwd=ROOT, env=env, check=False, timeout=1800)
    if res.returncode != 0:
        raise LabError(
            f"ansible-playbook {playbook.name} failed (exit {res.returncode}); the lab is still up "
            f"for a look: `meshkit lab ssh --name {spec.name} web`; remove it with "
            f"`meshkit lab down --name {spec.name}`"
        )


def on_web(spec: LabSpec, paths: LabPaths, command: str) -> subprocess.CompletedProcess[str]:
    return access.ssh(spec, paths, spec.machine("web"), command, timeout=30)


def show_traffic(spec: LabSpec, paths: LabPaths, shape: DemoShape) -> bool:
    db_addr = spec.machine("db").address
    step(f"A request from web through its upstream {shape.upstream_name!r} to db, over mTLS")
    mesh_cmd = f"curl -sS -m 10 http://127.0.0.1:{shape.upstream_port}/"
    res = on_web(spec, paths, mesh_cmd)
    print(f"web$ {mesh_cmd}")
    print(textblock(res.stdout + res.stderr))
    through_mesh = res.returncode == 0 and res.stdout.startswith("db on ")
    step("A direct connection from web to db's app port, around the mesh")
    direct_cmd = f"curl -sS -m 5 http://{db_addr}:{shape.db_port}/"
    res = on_web(spec, paths, direct_cmd)
    print(f"web$ {direct_cmd}")
    print(textblock(res.stdout + res.stderr))
    blocked, verdict = direct_verdict(res.returncode)
    print(f"   -> {verdict}")
    return through_mesh and blocked


# curl's exit codes for the two ways a connection fails (curl(1), EXIT CODES).
CURL_CONNECT_REFUSED = 7
CURL_TIMED_OUT = 28


def direct_verdict(curl_exit: int) -> tuple[bool, str]:
    """Whether the direct connection was kept out, and how, in the words of what happened.

    The loopback guard drops packets (no answer, curl times out); a reset is a refusal. The
    two read differently when something breaks, so the demo never calls a timeout "refused".
    """
    if curl_exit == 0:
        return False, "NOT blocked: db's app is reachable around the mesh"
    if curl_exit == CURL_TIMED_OUT:
        return True, (
            "dropped (no answer, curl timed out): the loopback guard's nftables table drops "
            "anything to db's app port that does not arrive on lo"
        )
    if curl_exit == CURL_CONNECT_REFUSED:
        return True, "refused (connection reset): nothing accepts db's app port on db's address"
    return True, f"blocked (curl exit {curl_exit})"


def typed_path(path: Path) -> str:
    """A path as the user types it where they ran the demo: relative when under the cwd."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def program(name: str) -> str:
    """How the user runs this venv's ``name``: bare when their PATH finds it, else its path.

    `./run demo` runs `.venv/bin/meshkit` with the venv off PATH; a hint saying `meshkit ...`
    would then be "command not found".
    """
    mine = Path(sys.executable).parent / name
    found = shutil.which(name)
    if found and Path(found).resolve() == mine.resolve():
        return name
    text = typed_path(mine)
    return text if "/" in text else f"./{text}"


def closing_hints(spec: LabSpec, paths: LabPaths, shape: DemoShape) -> list[str]:
    """Commands to go on with the running lab, each runnable as printed (from the cwd)."""
    meshkit = program("meshkit")
    lab_name = shlex.quote(spec.name)
    playbook = shlex.join(
        [
            program("ansible-playbook"),
            "-i",
            typed_path(ROOT / "inventories" / "lab"),
            "-i",
            str(paths.inventory),
            typed_path(ROOT / "playbooks" / "verify.yml"),
        ]
    )
    if Path.cwd().resolve() != ROOT.resolve():  # ansible.cfg is read from the checkout
        playbook = f"ANSIBLE_CONFIG={shlex.quote(str(ROOT / 'ansible.cfg'))} {playbook}"
    return [
        f"   shell on web:   {meshkit} lab ssh --name {lab_name} web",
        f"   through mesh:   {meshkit} lab ssh --name {lab_name} web -- "
        f"curl -s http://127.0.0.1:{shape.upstream_port}/",
        f"   status:         {meshkit} lab status --name {lab_name}",
        f"   Ansible:        {playbook}",
        f"   tear down:      {meshkit} lab down --name {lab_name}",
    ]


def textblock(text: str) -> str:
    lines = text.strip().splitlines() or ["(no output)"]
    return "\n".join(f"   {line}" for line in lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="meshkit demo",
        description="Boot lab machines (cp, web, db), roll the demo mesh out with "
        "ansible-playbook playbooks/demo.yml, and show traffic through it.",
    )
    p.add_argument("--name", default=DEFAULT_LAB, help=f"lab name (default {DEFAULT_LAB})")
    p.add_argument("--isolated", action="store_true",
                   default=os.environ.get("MESHKIT_LAB_ISOLATED") == "1",
                   help="run the lab in its own gateway namespace (see docs/lab.md)")  # fmt: skip
    args = p.parse_args(argv)
    started = time.monotonic()
    try:
        name = check_lab_name(args.name)
        inventory_dir = ROOT / "inventories" / "lab"
        playbook = ROOT / "playbooks" / "demo.yml"
        if not playbook.exists() or not inventory_dir.is_dir():
            raise LabError(
                f"{playbook} or {inventory_dir} not found: run `meshkit demo` from a meshkit "
                "checkout (./run demo)"
            )
        shape = read_shape(inventory_dir)
        spec = default_spec(name, isolated=args.isolated)
        step("Lab machines: cp (control plane, db), web, db on 198.18.0.0/24")
        paths = lab.up(spec)
        t_lab = time.monotonic()
        step("Rolling the demo mesh out with ansible-playbook")
        run_playbook(spec, paths, inventory_dir, playbook)
        t_play = time.monotonic()
        ok = show_traffic(spec, paths, shape)
    except LabError as exc:
        print(f"meshkit demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("meshkit demo: interrupted; `meshkit lab down` removes the lab", file=sys.stderr)
        return 130
    step("The lab is still running")
    print(f"   lab up {t_lab - started:.0f}s, rollout {t_play - t_lab:.0f}s, "
          f"total {time.monotonic() - started:.0f}s")  # fmt: skip
    print("\n".join(closing_hints(spec, paths, shape)))
    if not ok:
        print("meshkit demo: the mesh did not behave as shown above", file=sys.stderr)
        return 1
    return 0
