# SPDX-License-Identifier: MPL-2.0
"""The import-layering check (.ci/import-layers, run by `./run lint`): the repository passes it,
and it fails on each kind of breach, shown on small trees built here."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / ".ci" / "import-layers"

RULES = """
[tool.meshkit.imports.packages.host]
path = "src/host"
may_import = []

[tool.meshkit.imports.packages.tools]
path = "src/tools"
may_import = ["host"]

[tool.meshkit.imports.layers]
host = ["host.main", "host.runtime | host.mode", "host.leg", "host"]
"""


def tree(tmp_path: Path, files: dict[str, str], rules: str = RULES) -> Path:
    (tmp_path / "pyproject.toml").write_text(rules)
    base = {
        "src/host/__init__.py": "",
        "src/host/main.py": "from host import runtime, mode\n",
        "src/host/runtime.py": "from host.leg import copy\n",
        "src/host/mode.py": "from .runtime import serve\n",
        "src/host/leg.py": "import ssl\n",
        "src/tools/__init__.py": "",
        "src/tools/agent.py": "from host.leg import copy\n",
    }
    for rel, text in {**base, **files}.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), str(root)], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


def test_the_repository_has_no_circle_and_nothing_upward() -> None:
    res = check(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "no circle, nothing upward" in res.stdout


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    res = check(tree(tmp_path, {}))
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_circle_fails_even_inside_one_layer_and_behind_type_checking(tmp_path: Path) -> None:
    res = check(
        tree(
            tmp_path,
            {
                "src/host/runtime.py": """
                    from typing import TYPE_CHECKING
                    if TYPE_CHECKING:
                        from host.mode import Mode
                """
            },
        )
    )
    assert res.returncode == 1
    assert "import circle among host.mode, host.runtime" in res.stdout
    assert "src/host/runtime.py:4" in res.stdout and "src/host/mode.py:1" in res.stdout


def test_an_upward_import_fails_with_its_line(tmp_path: Path) -> None:
    files = {"src/host/leg.py": "def f():\n    from host.main import run\n"}
    res = check(tree(tmp_path, files))
    assert res.returncode == 1
    assert "src/host/leg.py:2: upward import: host.leg" in res.stdout
    assert "imports host.main" in res.stdout


def test_the_host_importing_the_tools_fails(tmp_path: Path) -> None:
    res = check(tree(tmp_path, {"src/host/leg.py": "from tools.agent import x\n"}))
    assert res.returncode == 1
    assert "src/host/leg.py:1: host.leg imports tools.agent, but host may import only" in res.stdout


def test_a_module_in_no_layer_is_named(tmp_path: Path) -> None:
    res = check(tree(tmp_path, {"src/host/stray.py": ""}))
    assert res.returncode == 1
    assert "host.stray is in no layer" in res.stdout


def test_missing_rules_are_a_configuration_error(tmp_path: Path) -> None:
    res = check(tree(tmp_path, {}, rules="[tool.other]\n"))
    assert res.returncode == 2
    assert "no [tool.meshkit.imports] packages table" in res.stderr
