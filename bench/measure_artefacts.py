#!/usr/bin/env python3
# SPDX-License-Identifier: MPL-2.0
"""Measure the two artefact kinds of the mesh_proxy role (figures for docs/rollout.md).

    .venv/bin/python bench/measure_artefacts.py [--shiv PATH] [--runs 5]

For each kind: build time on the controller (from a clean build directory), artefact size,
install time on a host (wheelhouse: venv + `pip --no-index`; shiv: a copy) and start time
(`meshkit-proxy -h`: the first run, which for shiv unpacks into SHIV_ROOT, and the median of
later runs). Not a test: it prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "roles" / "mesh_proxy" / "files" / "build_artefact.py"


def timed(cmd: list[str], **kw: object) -> float:
    started = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True, **kw)  # type: ignore[call-overload]
    return time.monotonic() - started


def build(kind: str, out: Path, env: dict[str, str]) -> tuple[float, dict[str, object]]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(BUILD), "--source", str(ROOT), "--out", str(out), "--kind", kind],
        check=True, capture_output=True, text=True, env=env,
    )  # fmt: skip
    return time.monotonic() - started, json.loads(proc.stdout)


def starts(cmd: list[str], runs: int, env: dict[str, str]) -> tuple[float, float]:
    first = timed(cmd, env=env)
    rest = [timed(cmd, env=env) for _ in range(runs)]
    return first, statistics.median(rest)


def du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shiv", help="the shiv executable (default: on PATH)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--python", default=shutil.which("python3") or sys.executable)
    args = parser.parse_args()
    env = dict(os.environ)
    if args.shiv:
        env["PATH"] = f"{Path(args.shiv).parent}{os.pathsep}{env['PATH']}"
    rows = []
    with tempfile.TemporaryDirectory(prefix="meshkit-measure-") as tmp:
        work = Path(tmp)
        # wheelhouse
        seconds, art = build("wheelhouse", work / "out-wh", env)
        release = work / "host" / "releases" / "r1"
        wheels = work / "host" / "wheels"
        wheels.mkdir(parents=True)
        started = time.monotonic()
        subprocess.run(["tar", "-xzf", str(art["path"]), "-C", str(wheels)], check=True)
        subprocess.run([args.python, "-m", "venv", "--without-pip", str(release)], check=True)
        (pip,) = wheels.glob("pip-*.whl")
        subprocess.run(
            [str(release / "bin" / "python"), f"{pip}/pip", "install", "-q", "--no-index",
             "--no-cache-dir", "--disable-pip-version-check", "--find-links", str(wheels),
             "meshkit[fast]"],
            check=True,
        )  # fmt: skip
        install = time.monotonic() - started
        first, warm = starts([str(release / "bin" / "meshkit-proxy"), "-h"], args.runs, env)
        size = int(str(art["size"]))
        rows.append(("wheelhouse + venv", seconds, size, du(release), install, first, warm))
        # shiv
        try:
            seconds, art = build("shiv", work / "out-shiv", env)
        except subprocess.CalledProcessError as exc:
            print(f"shiv build failed (is shiv installed?): {exc.stderr}", file=sys.stderr)
        else:
            target = work / "host" / "meshkit-proxy.pyz"
            started = time.monotonic()
            shutil.copy2(str(art["path"]), target)
            install = time.monotonic() - started
            shiv_env = {**env, "SHIV_ROOT": str(work / "shiv-root")}
            first, warm = starts([args.python, str(target), "-h"], args.runs, shiv_env)
            size = int(str(art["size"]))
            disk = size + du(work / "shiv-root")
            rows.append(("shiv zipapp", seconds, size, disk, install, first, warm))
    print(
        "| kind | build (s) | artefact (MiB) | on host (MiB) | install (s) | first start (s) "
        "| start, median (s) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for kind, b, size, disk, inst, first, warm in rows:
        print(f"| {kind} | {b:.1f} | {size / 2**20:.1f} | {disk / 2**20:.1f} | {inst:.2f} "
              f"| {first:.2f} | {warm:.2f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
