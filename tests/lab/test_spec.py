# SPDX-License-Identifier: MPL-2.0
"""Lab input parsing and inventory generation, checked with the real ansible-inventory (no root)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from meshkit_tools.lab import access
from meshkit_tools.lab.errors import LabError
from meshkit_tools.lab.paths import LabPaths
from meshkit_tools.lab.spec import (
    build_spec,
    default_spec,
    load_scenario,
    parse_groups,
    parse_machines,
)

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def test_default_lab_shape_matches_the_roles_agreement() -> None:
    spec = default_spec("lab")
    assert [(m.name, str(m.address)) for m in spec.machines] == [
        ("cp", "198.18.0.10"),
        ("web", "198.18.0.11"),
        ("db", "198.18.0.12"),
    ]
    assert spec.groups == {
        "mesh_control": ("cp",),
        "web_servers": ("web",),
        "db_servers": ("db", "cp"),
    }
    assert spec.parents == {"mesh_hosts": ("web_servers", "db_servers")}
    assert not set(spec.groups) & {m.name for m in spec.machines}, "a group named like a host"


def test_machines_and_groups_from_arguments() -> None:
    names = parse_machines("a, b,c")
    groups = parse_groups("front=a;back=b,c")
    spec = build_spec("t1", names, groups)
    assert [str(m.address) for m in spec.machines] == ["198.18.0.10", "198.18.0.11", "198.18.0.12"]
    assert spec.groups["back"] == ("b", "c")


@pytest.mark.parametrize(
    ("machines", "groups", "needle"),
    [
        ("a,a", "", "repeat: a"),
        ("A", "", "machine name 'A' is invalid"),
        ("", "", "no machine names"),
        ("a,b", "g=a,z", "unknown machines z"),
        ("a", "g-1=a", "group name 'g-1' is invalid"),
        ("a", "g", "is not GROUP=MACHINE"),
    ],
)
def test_bad_arguments_name_the_problem(machines: str, groups: str, needle: str) -> None:
    with pytest.raises(LabError, match=needle):
        build_spec("t", parse_machines(machines), parse_groups(groups))


def test_bad_lab_name() -> None:
    with pytest.raises(LabError, match="lab name 'Bad_Name' is invalid"):
        build_spec("Bad_Name", ["a"])


def test_scenario_file(tmp_path: Path) -> None:
    f = tmp_path / "lab.yml"
    f.write_text("machines: [x, y]\ngroups: {g: [x, y]}\nchildren: {top: [g]}\n")
    spec = load_scenario(f, name="s1")
    assert spec.name == "s1" and spec.parents == {"top": ("g",)}
    f.write_text("machines: [x]\nhostz: 1\n")
    with pytest.raises(LabError, match=rf"{f}: unknown field\(s\) hostz"):
        load_scenario(f)
    f.write_text("machines: x\n")
    with pytest.raises(LabError, match="field 'machines' must be a list"):
        load_scenario(f)


def _ansible_inventory(*sources: Path) -> dict[str, object]:
    argv = [str(VENV_BIN / "ansible-inventory"), "--list"]
    for s in sources:
        argv += ["-i", str(s)]
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    res = subprocess.run(argv, capture_output=True, text=True, env=env, check=True, cwd=ROOT)
    data: dict[str, object] = json.loads(res.stdout)
    return data


@pytest.mark.parametrize("isolated", [False, True])
def test_inventory_with_the_lab_group_vars(tmp_path: Path, isolated: bool) -> None:
    """The generated hosts file plus inventories/lab gives the agreed groups and connection vars."""
    spec = default_spec("lab", isolated=isolated)
    paths = LabPaths("lab", base=tmp_path)
    paths.state.mkdir(parents=True)
    access.write_access_files(spec, paths)
    text = paths.inventory.read_text()
    raw = yaml.safe_load(text)
    assert set(raw["all"]["vars"]) == {
        "ansible_user",
        "ansible_ssh_private_key_file",
        "ansible_python_interpreter",
        "ansible_ssh_common_args",
        "ansible_control_path_dir",
    }, "only connection variables: the mesh model belongs to inventories/lab/group_vars"
    sources = [paths.inventory]
    if (ROOT / "inventories" / "lab").is_dir():
        sources.insert(0, ROOT / "inventories" / "lab")
    inv = _ansible_inventory(*sources)
    names = ("mesh_control", "web_servers", "db_servers")
    groups = {g: set(inv[g].get("hosts", [])) for g in names}  # type: ignore[attr-defined]
    assert groups == {"mesh_control": {"cp"}, "web_servers": {"web"}, "db_servers": {"db", "cp"}}
    assert set(inv["mesh_hosts"]["children"]) == {"web_servers", "db_servers"}  # type: ignore[index]
    hv = inv["_meta"]["hostvars"]  # type: ignore[index]
    assert hv["web"]["ansible_host"] == "198.18.0.11"
    assert hv["cp"]["ansible_user"] == "root"
    assert hv["cp"]["ansible_python_interpreter"] == "/usr/bin/python3"
    assert hv["db"]["ansible_ssh_private_key_file"] == str(paths.key)
    args = hv["db"]["ansible_ssh_common_args"]
    assert "StrictHostKeyChecking=no" in args
    assert f"UserKnownHostsFile={paths.known_hosts}" in args
    assert ("ProxyCommand=" in args) is isolated
    if (ROOT / "inventories" / "lab" / "group_vars" / "all.yml").exists():
        assert "meshkit_datacenter" in hv["web"], "group_vars of inventories/lab apply"


def test_key_is_private(tmp_path: Path) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen (openssh-client) is not installed")
    paths = LabPaths("k", base=tmp_path)
    paths.state.mkdir(parents=True)
    public = access.make_key(paths)
    assert public.startswith("ssh-ed25519 ")
    assert paths.key.stat().st_mode & 0o777 == 0o600
    assert "PRIVATE KEY" in paths.key.read_text()


def _cli(*args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "meshkit_tools.cli", "lab", *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "proxy")}
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=60)


def test_cli_rejects_bad_input_before_touching_anything() -> None:
    res = _cli("up", "--name", "t-cli", "--machines", "a,a")
    assert res.returncode == 2
    assert "machine names repeat: a" in res.stderr
    assert not LabPaths("t-cli").state.exists()
    res = _cli("up", "--name", "NO")
    assert res.returncode == 2 and "lab name 'NO' is invalid" in res.stderr


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root")
def test_cli_needs_root() -> None:
    res = _cli("up", "--name", "t-user", "--machines", "a", user="65534")
    assert res.returncode == 2, res.stderr
    assert "needs root" in res.stderr


def test_status_of_a_lab_that_is_not_up() -> None:
    res = _cli("status", "--name", "t-absent")
    assert res.returncode == 3
    assert "lab 't-absent' is not up" in res.stdout


def test_relay_carries_both_directions_and_ends_with_the_peer() -> None:
    """The isolated labs' ProxyCommand: bytes go both ways; it exits when the server closes."""

    async def scenario() -> tuple[bytes, int]:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await reader.read(1024)
            writer.write(data.upper())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "proxy")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "meshkit_tools.lab.relay", "127.0.0.1", str(port),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(b"hello relay"), 20)
        server.close()
        return out, await proc.wait()

    out, rc = asyncio.run(scenario())
    assert out == b"HELLO RELAY"
    assert rc == 0
