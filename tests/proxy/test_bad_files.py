# SPDX-License-Identifier: MPL-2.0
"""Bad input files are one clear line and exit 2, fast and in bounded memory (issue 13 item 5).

Every command that reads a file is run as a real subprocess: `meshkit-proxy -config`, the
dev agent's `-config-dir`, `meshkit render`, `meshkit nomad render` (its `--mesh` and `--job`
files). Each gets a non-UTF-8 file, a deeply nested one, an over-sized one and, for YAML, an
alias bomb. The child's peak RSS comes from `wait4`, so it is that process's own figure; its
address space is capped (RLIMIT_AS) so a regression fails instead of taking the machine.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
AS_LIMIT = 1536 << 20  # the old code's alias bomb passes 600 MiB; stop it well before swap
MAX_RSS_KIB = 160 << 10  # a meshkit command's imports take about 60 MiB
MAX_SECONDS = 1.0
# `meshkit nomad` keeps nomad-pack's exit codes (docs/nomad.md) except for a bad file: 2.
ERROR_EXIT: dict[str, int] = {}


def _bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


YAML_CASES: dict[str, tuple[bytes, str]] = {
    "non-utf8": (b"service: caf\xe9\n", "not UTF-8: byte 0xe9 at offset 12"),
    "deep": (b"x: " + b"[" * 20000 + b"]" * 20000 + b"\n", "nested deeper than 64 levels"),
    "deep-block": (
        "".join(f"{'  ' * i}k{i}:\n" for i in range(200)).encode(),
        "nested deeper than 64 levels",
    ),
    "alias-bomb": (_bomb().encode(), "aliases expand to more than"),
    "huge": (b"# padding\n" * 220000, "larger than 1048576 bytes"),
}

JSON_CASES: dict[str, tuple[bytes, str]] = {
    "non-utf8": (b'{"service": {"name": "caf\xe9"}}', "not UTF-8: byte 0xe9 at offset 25"),
    "deep": (
        b'{"service": ' + b"[" * 100000 + b"]" * 100000 + b"}",
        "nested deeper than 64 levels",
    ),
    "huge": (b"{" + b" " * (2 << 20) + b"}", "larger than 1048576 bytes"),
}


@dataclass
class Outcome:
    code: int
    stderr: str
    seconds: float  # wall
    cpu_seconds: float  # user + system of the child
    max_rss_kib: int


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def run_measured(args: list[str], cwd: Path) -> Outcome:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "proxy"), env.get("PYTHONPATH", "")])
    env["ANSIBLE_COLLECTIONS_PATH"] = str(ROOT / "collections")
    err_path = cwd / "stderr.txt"
    with open(err_path, "wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            preexec_fn=_limit_memory,
        )
        deadline = started + 30
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        seconds = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    text = err_path.read_text(errors="replace")
    return Outcome(proc.returncode, text, seconds, cpu, usage.ru_maxrss)


def _check(outcome: Outcome, baseline: Outcome, path: Path, problem: str, code: int = 2) -> None:
    """`baseline` is the same command on a missing file: what starting it costs here.

    The wall bound is on the time the bad file adds to that (on a quiet machine the whole run
    is well under a second; with seven engineers on two cores, start-up alone can pass it),
    and the CPU bound is absolute.
    """
    lines = outcome.stderr.strip().splitlines()
    assert outcome.code == code, f"exit {outcome.code}\n{outcome.stderr[-3000:]}"
    assert len(lines) == 1, outcome.stderr[-3000:]
    assert str(path) in lines[0] and problem in lines[0], lines[0]
    assert "Traceback" not in outcome.stderr
    assert outcome.cpu_seconds < MAX_SECONDS, f"{outcome.cpu_seconds:.2f}s CPU"
    extra = outcome.seconds - baseline.seconds
    assert outcome.seconds < MAX_SECONDS or extra < MAX_SECONDS / 2, (
        f"{outcome.seconds:.2f}s wall, start-up {baseline.seconds:.2f}s"
    )
    assert outcome.max_rss_kib < MAX_RSS_KIB, f"peak RSS {outcome.max_rss_kib} KiB"


Command = Callable[[Path, Path], list[str]]  # (workdir, bad file) -> argv after python


def _proxy(work: Path, bad: Path) -> list[str]:
    return ["-m", "meshkit.proxy_main", "-config", str(bad)]


def _render(work: Path, bad: Path) -> list[str]:
    return ["-m", "meshkit_tools.cli", "render", str(bad)]


def _nomad_mesh(work: Path, bad: Path) -> list[str]:
    job = work / "job.yml"
    job.write_text("datacenters: [dc1]\n")
    return ["-m", "meshkit_tools.cli", "nomad", "render", "--mesh", str(bad), "--job", str(job)]


def _nomad_job(work: Path, bad: Path) -> list[str]:
    mesh = work / "mesh.yml"
    mesh.write_text("meshkit_services: []\n")
    return ["-m", "meshkit_tools.cli", "nomad", "render", "--mesh", str(mesh), "--job", str(bad)]


YAML_COMMANDS: dict[str, Command] = {
    "proxy": _proxy,
    "render": _render,
    "nomad-mesh": _nomad_mesh,
    "nomad-job": _nomad_job,
}


@pytest.mark.parametrize("case", sorted(YAML_CASES))
@pytest.mark.parametrize("command", sorted(YAML_COMMANDS))
def test_bad_yaml_file_is_one_line_exit_2(tmp_path: Path, command: str, case: str) -> None:
    content, problem = YAML_CASES[case]
    bad = tmp_path / f"{case}.yaml"
    bad.write_bytes(content)
    baseline = run_measured(YAML_COMMANDS[command](tmp_path, tmp_path / "missing.yaml"), tmp_path)
    outcome = run_measured(YAML_COMMANDS[command](tmp_path, bad), tmp_path)
    _check(outcome, baseline, bad, problem, ERROR_EXIT.get(command, 2))


@pytest.mark.parametrize("case", sorted(JSON_CASES))
def test_bad_dev_agent_config_dir_file_is_one_line_exit_2(tmp_path: Path, case: str) -> None:
    content, problem = JSON_CASES[case]
    config_dir = tmp_path / "conf"
    config_dir.mkdir()
    bad = config_dir / f"{case}.json"
    bad.write_bytes(content)
    args = ["-m", "meshkit_tools.cli", "dev-agent", "-http-addr", "127.0.0.1:0", "-config-dir"]
    baseline = run_measured([*args, str(tmp_path / "missing")], tmp_path)
    outcome = run_measured([*args, str(config_dir)], tmp_path)
    _check(outcome, baseline, bad, problem)


def test_bad_tls_file_is_one_line_exit_2(tmp_path: Path) -> None:
    """The proxy's certificate files go through the same reader."""
    from tests.support.pki_files import ThrowawayCA
    from tests.support.static_mesh import inbound_config

    ca = ThrowawayCA.create(tmp_path / "pki")
    leaf = ca.leaf("db")
    leaf.key.write_bytes(b"\xff\xfe not a key")

    config = tmp_path / "proxy.yaml"
    config.write_text(yaml.safe_dump(inbound_config("db", leaf, [ca.root_file()], 8080, 20000)))
    outcome = run_measured(_proxy(tmp_path, config), tmp_path)
    lines = [ln for ln in outcome.stderr.splitlines() if ln.startswith("meshkit-proxy:")]
    assert outcome.code == 2 and len(lines) == 1, outcome.stderr
    assert f"{leaf.key}: not UTF-8: byte 0xff at offset 0" in lines[0]
