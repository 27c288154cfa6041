# SPDX-License-Identifier: MPL-2.0
"""Running host commands: one place that turns a failed command into a LabError with its output."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from meshkit_tools.lab.errors import LabError

VERBOSE = False


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 120,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    if VERBOSE:
        print("+ " + " ".join(argv), file=sys.stderr)
    try:
        res = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            check=False,
        )
    except FileNotFoundError as exc:
        raise LabError(f"command not found: {argv[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(argv)}: no answer within {timeout:.0f}s") from exc
    if check and res.returncode != 0:
        detail = (res.stderr or res.stdout).strip().splitlines()[-5:]
        raise LabError(f"{' '.join(argv)} failed (exit {res.returncode}): " + " | ".join(detail))
    return res


def ok(argv: Sequence[str], *, timeout: float = 60) -> bool:
    """Best-effort step of a teardown: report nothing, return whether it worked."""
    try:
        return run(argv, check=False, timeout=timeout).returncode == 0
    except LabError:
        return False
