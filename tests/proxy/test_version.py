# SPDX-License-Identifier: MPL-2.0
"""`meshkit-proxy -version` and `meshkit --version` print the package version, as
`consul version` users expect, and exit 0 without needing any other flag."""

from __future__ import annotations

import subprocess
import sys

import pytest

from meshkit import __version__


@pytest.mark.parametrize("flag", ["-version", "--version", "-version=true"])
def test_proxy_version(flag: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "meshkit.proxy_main", flag],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"meshkit-proxy v{__version__}"


def test_meshkit_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "meshkit_tools.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"meshkit {__version__}"
