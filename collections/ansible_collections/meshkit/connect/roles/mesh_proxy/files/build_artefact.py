#!/usr/bin/env python3
# SPDX-License-Identifier: MPL-2.0
"""Build the meshkit artefact for hosts on the controller, from a checkout or a shipped wheel.

Where meshkit comes from, in this order: ``--source`` (a checkout, e.g. a release under test);
else the checkout that holds this role (``--find-checkout-from``, the role's path: a developer's
tree, so edits reach the hosts); else the meshkit wheel shipped in the installed collection's
``files/`` (``--wheel-dir``; put there by ``.ci/build-collection``, the release step). A Galaxy
user therefore needs no checkout; the controller still needs a package index (or a pip
configured with a mirror) for meshkit's dependencies, as before.

Two kinds, measured in docs/rollout.md:
- ``wheelhouse``: a tar.gz of every wheel meshkit needs (plus pip itself), for the target
  interpreter and platform, installed on the host with ``pip --no-index`` into a versioned
  virtualenv. Hosts need no package index.
- ``shiv``: one executable zipapp (needs the ``shiv`` tool on the controller).

The artefact is named by the meshkit version and a hash of the source, so an unchanged checkout
reuses it (prints ``"changed": false``) and a changed one gives a new release on the hosts.
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import tomllib

# The files whose content defines a build; anything else in the checkout does not matter.
SOURCE_GLOBS = ("pyproject.toml", "proxy/meshkit/**/*.py", "proxy/meshkit/py.typed")
MANYLINUX = ("manylinux2014", "manylinux_2_17", "manylinux_2_28", "manylinux1", "manylinux_2_5")


def source_digest(source: Path) -> str:
    digest = hashlib.sha256()
    files = sorted({p for g in SOURCE_GLOBS for p in source.glob(g) if p.is_file()})
    for path in files:
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(source).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(f"build_artefact: {' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")
        raise SystemExit(1)


def is_checkout(path: Path) -> bool:
    """A meshkit source tree: its pyproject names the project meshkit."""
    pyproject = path / "pyproject.toml"
    if not (pyproject.is_file() and (path / "proxy" / "meshkit").is_dir()):
        return False
    try:
        return tomllib.loads(pyproject.read_text()).get("project", {}).get("name") == "meshkit"
    except (OSError, tomllib.TOMLDecodeError):
        return False


def find_checkout(start: Path) -> Path | None:
    """The meshkit checkout that holds ``start`` (the role's directory), if there is one."""
    for parent in [start.resolve(), *start.resolve().parents][:10]:
        if is_checkout(parent):
            return parent
    return None


def newest_wheel(wheel_dir: Path) -> Path | None:
    wheels = sorted(wheel_dir.glob("meshkit-*-py3-none-any.whl"), key=lambda p: p.stat().st_mtime)
    return wheels[-1] if wheels else None


def wheel_version(wheel: Path) -> str:
    """meshkit-<version>-py3-none-any.whl: the version is the second dash-separated field."""
    return wheel.name.split("-")[1]


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def build_wheelhouse(source: Path, dest: Path, args: argparse.Namespace) -> None:
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    with tempfile.TemporaryDirectory(prefix="meshkit-wh-") as tmp:
        wh = Path(tmp) / "wheelhouse"
        if source.suffix == ".whl":
            wh.mkdir()
            shutil.copy2(source, wh / source.name)
        else:
            run([*pip, "wheel", "-q", "--no-deps", "-w", str(wh), str(source)])
        (meshkit_wheel,) = wh.glob("meshkit-*.whl")
        extras = f"[{args.extras}]" if args.extras else ""
        platforms = [x for tag in MANYLINUX for x in ("--platform", f"{tag}_{args.arch}")]
        cp = "cp" + args.python_version.replace(".", "")
        run([*pip, "download", "-q", "--only-binary=:all:", "--python-version",
             args.python_version, "--implementation", "cp", "--abi", cp, "--abi", "abi3",
             "--abi", "none", *platforms, "--platform", "any", "-d", str(wh),
             f"{meshkit_wheel}{extras}", "pip"])  # fmt: skip
        partial = dest.with_suffix(".part")
        with tarfile.open(partial, "w:gz") as tar:
            for wheel in sorted(wh.iterdir()):
                tar.add(wheel, arcname=wheel.name)
        partial.rename(dest)


def build_shiv(source: Path, dest: Path, args: argparse.Namespace) -> None:
    shiv = shutil.which("shiv") or str(Path(sys.executable).with_name("shiv"))
    extras = f"[{args.extras}]" if args.extras else ""
    partial = dest.with_suffix(".part")
    run([shiv, "-q", "-c", "meshkit-proxy", "-o", str(partial), "--python", "/usr/bin/env python3",
         "--reproducible", f"{source}{extras}"])  # fmt: skip
    partial.rename(dest)


def optional_path(value: str) -> Path | None:
    """An empty --out (the role's default) means: pick the directory from the source."""
    return Path(value) if value else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="a meshkit checkout to build from")
    parser.add_argument(
        "--find-checkout-from", type=Path, help="use the meshkit checkout holding this path"
    )
    parser.add_argument(
        "--wheel-dir", type=Path, help="else: the newest meshkit-*.whl in this directory"
    )
    parser.add_argument(
        "--out",
        type=optional_path,
        help="directory for artefacts (default: <checkout>/build/artefacts, "
        "or ~/.cache/meshkit/artefacts when built from a wheel)",
    )
    parser.add_argument("--kind", choices=("wheelhouse", "shiv"), default="wheelhouse")
    parser.add_argument("--python-version", default="3.11", help="the hosts' python3, X.Y")
    parser.add_argument("--arch", default="x86_64", help="the hosts' machine (uname -m)")
    parser.add_argument("--extras", default="fast", help="meshkit extras, comma-separated")
    args = parser.parse_args(argv)

    source: Path | None = None
    if args.source:
        source = args.source.resolve()
        if not (source / "pyproject.toml").is_file():
            parser.error(f"--source {source}: no pyproject.toml there; point it at the checkout")
    elif args.find_checkout_from:
        source = find_checkout(args.find_checkout_from)
    if source is not None:
        version = tomllib.loads((source / "pyproject.toml").read_text())["project"]["version"]
        digest = source_digest(source)
        out = args.out or source / "build" / "artefacts"
    else:
        wheel = newest_wheel(args.wheel_dir) if args.wheel_dir else None
        if wheel is None:
            parser.error(
                f"no meshkit checkout holds {args.find_checkout_from} and no meshkit-*.whl is in "
                f"{args.wheel_dir}: build the collection with .ci/build-collection (it ships the "
                "wheel in files/), or set mesh_proxy_source_dir to a meshkit checkout"
            )
        source, version, digest = wheel, wheel_version(wheel), file_digest(wheel)
        out = args.out or Path.home() / ".cache" / "meshkit" / "artefacts"
    cp = "cp" + args.python_version.replace(".", "")
    extras = args.extras.replace(",", "+") or "base"
    release = f"{version}-{digest}-{extras}-{cp}-{args.arch}"
    suffix = ".tar.gz" if args.kind == "wheelhouse" else ".pyz"
    args.out = out
    args.out.mkdir(parents=True, exist_ok=True)
    dest = args.out / f"meshkit-{release}{suffix}"
    started = time.monotonic()
    # Several rollouts may build the same release at once (parallel labs, parallel plays): the
    # first builds it under the lock, the others wait and reuse it, so none reads a half file.
    with open(args.out / f"{dest.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        changed = not dest.exists()
        if changed:
            (build_wheelhouse if args.kind == "wheelhouse" else build_shiv)(source, dest, args)
    result = {
        "changed": changed,
        "kind": args.kind,
        "release": release,
        "source": str(source),
        "path": str(dest),
        "name": dest.name,
        "size": dest.stat().st_size,
        "sha256": hashlib.sha256(dest.read_bytes()).hexdigest(),
        "build_seconds": round(time.monotonic() - started, 2),
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
