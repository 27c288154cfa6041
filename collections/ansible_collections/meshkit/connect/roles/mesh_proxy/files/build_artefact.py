#!/usr/bin/env python3
# SPDX-License-Identifier: MPL-2.0
"""Build a meshkit artefact for hosts on the controller, from a checkout or shipped wheels.

Two packages (``--package``): ``host`` (the default) is what every proxy host runs, the
``meshkit`` distribution built from the checkout's ``proxy/``; ``tools`` is ``meshkit-tools``
from ``tools/`` (the dev agent, for ``consul_dev``), which needs the host package too. Each is
named by a hash of its own sources only, so an edit to the lab or the dev agent leaves the
proxies' release (and the proxies) alone.

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
from dataclasses import dataclass
from pathlib import Path

import tomllib


@dataclass(frozen=True)
class Package:
    """One distribution the controller can build for hosts."""

    folder: str  # in the checkout: the folder with its pyproject.toml
    wheel_glob: str  # its wheel's file name, as .ci/build-collection ships it in files/
    script: str  # the console script a host runs (and the install checks)
    release_prefix: str  # before the version in the release name
    source_globs: tuple[str, ...]  # the files whose content defines a build; nothing else does
    needs: tuple[str, ...] = ()  # other packages built and shipped with it


BUILD_LEFTOVERS = ("build", "*.egg-info", "__pycache__", "dist")
HOST_GLOBS = ("proxy/pyproject.toml", "proxy/meshkit/**/*.py", "proxy/meshkit/py.typed")
PACKAGES = {
    "host": Package("proxy", "meshkit-*-py3-none-any.whl", "meshkit-proxy", "", HOST_GLOBS),
    "tools": Package(
        "tools",
        "meshkit_tools-*-py3-none-any.whl",
        "meshkit",
        "tools-",
        (
            *HOST_GLOBS,
            "tools/pyproject.toml",
            "tools/meshkit_tools/**/*.py",
            "tools/meshkit_tools/py.typed",
        ),
        needs=("host",),
    ),
}
MANYLINUX = ("manylinux2014", "manylinux_2_17", "manylinux_2_28", "manylinux1", "manylinux_2_5")


def source_digest(source: Path, package: Package = PACKAGES["host"]) -> str:
    digest = hashlib.sha256()
    files = sorted({p for g in package.source_globs for p in source.glob(g) if p.is_file()})
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
    """A meshkit source tree: its proxy/pyproject.toml names the host package meshkit."""
    pyproject = path / "proxy" / "pyproject.toml"
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


def newest_wheel(wheel_dir: Path, package: Package = PACKAGES["host"]) -> Path | None:
    wheels = sorted(wheel_dir.glob(package.wheel_glob), key=lambda p: p.stat().st_mtime)
    return wheels[-1] if wheels else None


def checkout_version(source: Path, package: Package) -> str:
    version: str = tomllib.loads((source / package.folder / "pyproject.toml").read_text())[
        "project"
    ]["version"]
    return version


def wheel_version(wheel: Path) -> str:
    """meshkit-<version>-py3-none-any.whl: the version is the second dash-separated field."""
    return wheel.name.split("-")[1]


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def package_wheels(sources: list[Path], wh: Path) -> list[Path]:
    """The wheels of the package and of what it needs: copied if shipped, else built."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    wheels = []
    for source in sources:
        if source.suffix == ".whl":
            shutil.copy2(source, wh / source.name)
            wheels.append(wh / source.name)
        else:
            # From a clean copy: setuptools builds in the source's build/ and packs what it finds
            # there, so a module moved away since the last build would ship again, and two
            # builds at once (host and tools both build proxy/) would share that directory.
            clean = wh.parent / f"src-{source.name}"
            shutil.copytree(source, clean, ignore=shutil.ignore_patterns(*BUILD_LEFTOVERS))
            before = set(wh.iterdir())
            run([*pip, "wheel", "-q", "--no-deps", "-w", str(wh), str(clean)])
            wheels.extend(sorted(set(wh.iterdir()) - before))
    return wheels


def build_wheelhouse(sources: list[Path], dest: Path, args: argparse.Namespace) -> None:
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    with tempfile.TemporaryDirectory(prefix="meshkit-wh-") as tmp:
        wh = Path(tmp) / "wheelhouse"
        wh.mkdir()
        main_wheel, *needed = package_wheels(sources, wh)
        extras = f"[{args.extras}]" if args.extras else ""
        platforms = [x for tag in MANYLINUX for x in ("--platform", f"{tag}_{args.arch}")]
        cp = "cp" + args.python_version.replace(".", "")
        # The needed wheels are named as files, so their pins resolve to these exact builds,
        # never to a same-named project on the index.
        run([*pip, "download", "-q", "--only-binary=:all:", "--python-version",
             args.python_version, "--implementation", "cp", "--abi", cp, "--abi", "abi3",
             "--abi", "none", *platforms, "--platform", "any", "-d", str(wh),
             f"{main_wheel}{extras}", *map(str, needed), "pip"])  # fmt: skip
        partial = dest.with_suffix(".part")
        with tarfile.open(partial, "w:gz") as tar:
            for wheel in sorted(wh.iterdir()):
                tar.add(wheel, arcname=wheel.name)
        partial.rename(dest)


def build_shiv(sources: list[Path], dest: Path, args: argparse.Namespace) -> None:
    shiv = shutil.which("shiv") or str(Path(sys.executable).with_name("shiv"))
    extras = f"[{args.extras}]" if args.extras else ""
    partial = dest.with_suffix(".part")
    main, *needed = sources
    run([shiv, "-q", "-c", args.package_spec.script, "-o", str(partial), "--python",
         "/usr/bin/env python3", "--reproducible", f"{main}{extras}",
         *map(str, needed)])  # fmt: skip
    partial.rename(dest)


def optional_path(value: str) -> Path | None:
    """An empty --out (the role's default) means: pick the directory from the source."""
    return Path(value) if value else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--package",
        choices=sorted(PACKAGES),
        default="host",
        help="host: meshkit, what proxy hosts run; tools: meshkit-tools (the dev agent)",
    )
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

    package = PACKAGES[args.package]
    args.package_spec = package
    chain = [package, *(PACKAGES[name] for name in package.needs)]
    checkout: Path | None = None
    if args.source:
        checkout = args.source.resolve()
        if not is_checkout(checkout):
            parser.error(
                f"--source {checkout}: no proxy/pyproject.toml of meshkit there; point it at "
                "the checkout"
            )
    elif args.find_checkout_from:
        checkout = find_checkout(args.find_checkout_from)
    if checkout is not None:
        version = checkout_version(checkout, package)
        digest = source_digest(checkout, package)
        sources = [checkout / p.folder for p in chain]
        out = args.out or checkout / "build" / "artefacts"
    else:
        wheels = [newest_wheel(args.wheel_dir, p) if args.wheel_dir else None for p in chain]
        if None in wheels:
            parser.error(
                f"no meshkit checkout holds {args.find_checkout_from} and no "
                f"{' and no '.join(p.wheel_glob for p in chain)} is in {args.wheel_dir}: build "
                "the collection with .ci/build-collection (it ships the wheels in files/), or "
                "set mesh_proxy_source_dir to a meshkit checkout"
            )
        sources = [w for w in wheels if w is not None]
        version = wheel_version(sources[0])
        digest = hashlib.sha256(b"".join(file_digest(w).encode() for w in sources)).hexdigest()[:12]
        out = args.out or Path.home() / ".cache" / "meshkit" / "artefacts"
    cp = "cp" + args.python_version.replace(".", "")
    extras = args.extras.replace(",", "+") or "base"
    release = f"{package.release_prefix}{version}-{digest}-{extras}-{cp}-{args.arch}"
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
            (build_wheelhouse if args.kind == "wheelhouse" else build_shiv)(sources, dest, args)
    result = {
        "changed": changed,
        "kind": args.kind,
        "release": release,
        "package": args.package,
        "source": str(sources[0]),
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
