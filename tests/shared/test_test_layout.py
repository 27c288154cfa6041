# SPDX-License-Identifier: MPL-2.0
"""Test helpers have one home, tests/support/: no file under tests/ imports from a test module or
a conftest.py, no helper module outside tests/support/ serves tests of another folder, and a
conftest.py holds fixtures and pytest hooks only (read with `ast`, nothing is imported)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(root: Path, path: Path, tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in the file, at any depth, relative ones resolved.

    `from pkg import name` yields `pkg.name` when that is a module of the tree, else `pkg`.
    """
    package = _module_name(root, path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                is_module = (root / Path(*sub.split("."))).with_suffix(".py").is_file()
                yield node.lineno, sub if is_module else module


def _area(module: str) -> str:
    """The folder under tests/ a module belongs to ("" for tests/ itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else ""


def _is_fixture_or_hook(node: ast.stmt) -> bool:
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return True  # imports, constants, sys.path set-up
    if node.name.startswith("pytest_"):
        return True
    for deco in node.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if ast.unparse(target) in ("pytest.fixture", "fixture"):
            return True
    return False


def layout_problems(root: Path) -> list[str]:
    """Every breach of the rules above in the tree at `root` (which holds tests/)."""
    problems: list[str] = []
    for path in sorted((root / "tests").rglob("*.py")):
        rel = path.relative_to(root)
        tree = ast.parse(path.read_text(), str(rel))
        importer = _module_name(root, path)
        for line, module in dict.fromkeys(_imported(root, path, tree)):
            if module.split(".")[0] != "tests":
                continue
            last = module.rsplit(".", 1)[-1]
            where = f"{rel}:{line} imports {module}"
            if last.startswith("test_"):
                problems.append(f"{where}: a test module (move what it shares to tests/support/)")
            elif last == "conftest":
                problems.append(f"{where}: a conftest (move what it shares to tests/support/)")
            elif not module.startswith("tests.support") and _area(module) != _area(importer):
                problems.append(f"{where}: a helper of another folder (move it to tests/support/)")
        if path.name == "conftest.py":
            for node in tree.body:
                if not _is_fixture_or_hook(node):
                    name = getattr(node, "name", "?")
                    problems.append(
                        f"{rel}:{node.lineno} defines {name}, not a fixture: "
                        "move it to tests/support/"
                    )
    return problems


def test_test_helpers_have_one_home() -> None:
    assert layout_problems(ROOT) == []


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_layout_check_finds_each_kind_of_breach(tmp_path: Path) -> None:
    """The check itself, on a small tree with one of each breach and the allowed imports."""
    _write(tmp_path, "tests/__init__.py", "")
    _write(tmp_path, "tests/support/ports.py", "def free_port(): ...\n")
    _write(tmp_path, "tests/a/__init__.py", "")
    _write(tmp_path, "tests/a/conftest.py", "def helper(): ...\n")
    _write(tmp_path, "tests/a/local.py", "X = 1\n")
    _write(tmp_path, "tests/a/test_one.py", "def shared(): ...\n")
    _write(
        tmp_path,
        "tests/a/test_two.py",
        "from tests.support.ports import free_port\n"  # allowed: the one home
        "from .local import X\n"  # allowed: a helper of the same folder
        "from .test_one import shared\n"
        "def test_x():\n"
        "    from tests.a.conftest import helper\n",
    )
    _write(tmp_path, "tests/b/__init__.py", "")
    _write(
        tmp_path,
        "tests/b/test_three.py",
        "from tests.a import local\nfrom tests.support import ports\n",
    )
    found = layout_problems(tmp_path)
    assert found == [
        "tests/a/conftest.py:1 defines helper, not a fixture: move it to tests/support/",
        "tests/a/test_two.py:3 imports tests.a.test_one: a test module "
        "(move what it shares to tests/support/)",
        "tests/a/test_two.py:5 imports tests.a.conftest: a conftest "
        "(move what it shares to tests/support/)",
        "tests/b/test_three.py:1 imports tests.a.local: a helper of another folder "
        "(move it to tests/support/)",
    ]
