# SPDX-License-Identifier: MPL-2.0
"""The controller command `meshkit` run from the checkout as a real process, as an operator
runs it: output, exit code, and no settings inherited from the caller's environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT

# Environment the tests' own shell may carry that would change what the command does.
CALLER_SETTINGS = (
    "ANSIBLE_COLLECTIONS_PATH",
    "NOMAD_ADDR",
    "NOMAD_TOKEN",
    "NOMAD_NAMESPACE",
    "NOMAD_REGION",
    "NOMAD_CACERT",
)


def meshkit(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`meshkit ARGS...` to completion (60 s at most), text output captured."""
    full_env = {k: v for k, v in os.environ.items() if k not in CALLER_SETTINGS}
    full_env.update(PYTHONPATH=str(ROOT / "proxy"), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "meshkit_tools.cli", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def meshkit_nomad(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`meshkit nomad ARGS...` in `cwd` (where the mesh and job files are)."""
    return meshkit("nomad", *args, cwd=cwd)


def meshkit_render(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`meshkit render ARGS...`."""
    return meshkit("render", *args, env=env)
