# SPDX-License-Identifier: MPL-2.0
"""The lint gate refuses module code that would crash on a managed host's older Python.

`.ci/lint-ansible` runs vermin and `.ci/target_python.py` over the collection's modules and
module_utils. These tests run the same two commands on a copy of module_utils with one
offending line added, and on the real collection, which must pass.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = ROOT / "collections/ansible_collections/meshkit/connect"
CHECKER = ROOT / ".ci/target_python.py"
VERMIN = Path(sys.executable).with_name("vermin")


def checker(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECKER), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def vermin(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VERMIN), "-q", "-t=3.8-", "--no-tips", "--violations", "--backport", "dataclasses"]
        + [str(p) for p in paths],
        capture_output=True,
        text=True,
        timeout=60,
    )


def module_utils_copy(tmp_path: Path, extra: str) -> Path:
    copy = tmp_path / "module_utils"
    shutil.copytree(COLLECTION / "plugins/module_utils", copy)
    (copy / "offender.py").write_text(
        "from __future__ import annotations\n\n\ndef f(value: object) -> bool:\n" + extra
    )
    return copy


def test_the_collection_passes() -> None:
    plugins = [COLLECTION / "plugins/modules", COLLECTION / "plugins/module_utils"]
    result = checker(*plugins)
    assert result.returncode == 0, result.stdout
    if VERMIN.exists():
        result = vermin(*plugins)
        assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    ("line", "needs"),
    [
        ("    return isinstance(value, int | str)\n", "3.10"),
        ("    return isinstance(value, (list[int], str))\n", "3.9"),
        ("    return isinstance(value, dict | None)\n", "3.10"),
        ("    return bool(getattr(value, 'x', '').removeprefix('y'))\n", "3.9"),
    ],
)
def test_pep604_and_pep585_values_fail_the_gate(tmp_path: Path, line: str, needs: str) -> None:
    result = checker(module_utils_copy(tmp_path, line))
    assert result.returncode == 1
    assert "offender.py:5:" in result.stdout and f"needs Python {needs}" in result.stdout


def test_annotations_and_bitwise_or_are_not_flagged(tmp_path: Path) -> None:
    body = "    x: int | None = None\n    flags = 1 | 2\n    return bool(x or flags)\n"
    assert checker(module_utils_copy(tmp_path, body)).returncode == 0


@pytest.mark.skipif(not VERMIN.exists(), reason="vermin is a dev dependency (pyproject [dev])")
def test_newer_stdlib_calls_fail_the_gate(tmp_path: Path) -> None:
    result = vermin(module_utils_copy(tmp_path, "    return str(value).removeprefix('x') == ''\n"))
    assert result.returncode != 0
    assert "removeprefix" in result.stdout
