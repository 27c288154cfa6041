# SPDX-License-Identifier: MPL-2.0
"""The machines' Debian root, built once with debootstrap and cached by its package list.

The cache key covers suite, mirror, package list and the image tweaks below, so changing any of
them builds a new image beside the old one; an unchanged list reuses the cached root (seconds).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from meshkit_tools.lab.paths import CACHE_ROOT, STATE_ROOT
from meshkit_tools.lab.proc import run

SUITE = "bookworm"
MIRROR = os.environ.get("MESHKIT_LAB_MIRROR", "http://deb.debian.org/debian")
PACKAGES = (
    "python3",
    "python3-venv",
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "nftables",
    "iproute2",
    "procps",
    "ca-certificates",
    "acl",  # Ansible become to an unprivileged user sets ACLs on its temp files
    "curl",
)
# Bump when the tweaks in _customise change, so old images are not reused.
TWEAKS_VERSION = 2
SSHD_CONFIG = """\
# meshkit lab: key-only root login, no DNS lookups (the lab has no resolver)
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
"""
# Timers that reach for the network or churn the disk; the lab has no route out.
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "systemd-timesyncd.service",
)


@dataclass(frozen=True)
class Image:
    root: Path
    key: str


def image_key() -> str:
    spec = {
        "suite": SUITE,
        "mirror": MIRROR,
        "packages": sorted(PACKAGES),
        "tweaks": TWEAKS_VERSION,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def image_cached() -> bool:
    return (_image_dir() / "root" / "usr" / "bin" / "python3").exists()


def _image_dir() -> Path:
    return CACHE_ROOT / "images" / f"{SUITE}-{image_key()}"


def ensure_image(*, log: bool = True) -> Image:
    key = image_key()
    base = CACHE_ROOT / "images"
    final = base / f"{SUITE}-{key}"
    if (final / "root" / "usr" / "bin" / "python3").exists():
        return Image(final / "root", key)
    base.mkdir(parents=True, exist_ok=True)
    with (base / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time; the others reuse its result
        if (final / "root" / "usr" / "bin" / "python3").exists():
            return Image(final / "root", key)
        work = base / f".build-{key}-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        started = time.monotonic()
        if log:
            print(
                f"lab: building the Debian {SUITE} image with debootstrap (once; ~1-3 min) "
                f"into {final}",
                file=sys.stderr,
            )
        try:
            run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    "--include=" + ",".join(PACKAGES),
                    SUITE,
                    str(work / "root"),
                    MIRROR,
                ],
                timeout=1200,
            )
            _customise(work / "root")
            (work / "manifest.json").write_text(
                json.dumps({"key": key, "packages": list(PACKAGES), "suite": SUITE}, indent=1)
            )
            shutil.rmtree(final, ignore_errors=True)
            work.rename(final)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        if log:
            print(f"lab: image built in {time.monotonic() - started:.0f}s", file=sys.stderr)
        _prune_unused(base, keep=final)
    return Image(final / "root", key)


def _prune_unused(base: Path, *, keep: Path) -> None:
    """Drop images of older package lists that no running lab still uses (they are 300+ MB)."""
    in_use = set()
    for state in STATE_ROOT.glob("*/lab.json"):
        try:
            in_use.add(str(Path(json.loads(state.read_text())["image"]).parent))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    for old in base.glob(f"{SUITE}-*"):
        if old != keep and str(old) not in in_use:
            shutil.rmtree(old, ignore_errors=True)


def _customise(root: Path) -> None:
    """Make one root fit to be many machines: no shared identity, no outbound timers."""
    for f in (root / "etc" / "ssh").glob("ssh_host_*"):
        f.unlink()  # each machine gets its own host key at boot time
    (root / "etc" / "machine-id").write_text("")
    (root / "etc" / "hostname").unlink(missing_ok=True)
    (root / "etc" / "ssh" / "sshd_config.d" / "meshkit-lab.conf").write_text(SSHD_CONFIG)
    for unit in MASKED_UNITS:
        link = root / "etc" / "systemd" / "system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    (root / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True)
    root_ssh = root / "root" / ".ssh"
    root_ssh.mkdir(mode=0o700, exist_ok=True)
