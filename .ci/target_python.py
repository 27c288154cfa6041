#!/usr/bin/env python3
# SPDX-License-Identifier: MPL-2.0
"""Refuse module code that would not run on the oldest target Python ansible-core still serves.

Modules and module_utils run on managed hosts, where the interpreter may be RHEL 9's 3.9 or
older (ansible-core 2.16 serves targets down to 3.6 for some platforms; meshkit.connect claims
3.8). Two tools together cover what can break there:

- vermin (run by .ci/lint-ansible) knows which stdlib modules, functions and keyword
  arguments appeared in which version (`str.removeprefix`, `zip(strict=)`, `match`, ...);
- this script covers the typing forms vermin does not see outside annotations (and a few
  newer methods, such as `str.removeprefix`, that vermin misses when it cannot see the
  type), because with `from __future__ import annotations` an annotation is never
  evaluated but an expression is:
  `isinstance(x, int | str)` (PEP 604, 3.10) and `list[int]`, `dict[str, int]` as values
  (PEP 585, 3.9), e.g. in `cast(...)`, a type alias or a default.

Usage: target_python.py FILE_OR_DIR... ; prints `path:line:col: message` and exits 1 on any.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

MINIMUM = "3.8"
# Methods vermin only recognises on values whose type it can see (a literal, `str(...)`).
NEWER_METHODS = {"removeprefix": "3.9", "removesuffix": "3.9", "is_relative_to": "3.9",
                 "bit_count": "3.10"}  # fmt: skip
BUILTIN_GENERICS = frozenset({"list", "dict", "set", "frozenset", "tuple", "type"})
TYPE_NAMES = BUILTIN_GENERICS | {
    "int",
    "str",
    "bytes",
    "float",
    "bool",
    "complex",
    "None",
    "object",
    "bytearray",
    "Any",
}


def _annotation_nodes(tree: ast.AST) -> set[int]:
    """ids of every node inside an annotation (never evaluated under the future import)."""
    inside: set[int] = set()

    def mark(node: ast.AST | None) -> None:
        if node is not None:
            inside.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            mark(node.returns)
            args = node.args
            for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                mark(a.annotation if a is not None else None)
        elif isinstance(node, ast.AnnAssign):
            mark(node.annotation)
    return inside


def _is_type_expr(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and node.value is None:
        return True
    if isinstance(node, ast.Name):
        return node.id in TYPE_NAMES or node.id[:1].isupper()
    if isinstance(node, ast.Attribute):
        return node.attr[:1].isupper()
    if isinstance(node, ast.Subscript):
        return _is_type_expr(node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _is_type_expr(node.left) and _is_type_expr(node.right)
    return False


def _names_a_type(node: ast.AST) -> bool:
    """A builtin type name or None: what tells `int | Foo` from `re.I | re.M`."""
    if isinstance(node, ast.Constant):
        return node.value is None
    return isinstance(node, ast.Name) and node.id in TYPE_NAMES


def problems(path: Path) -> Iterator[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as err:
        yield f"{path}:{err.lineno}:{err.offset}: does not parse: {err.msg}"
        return
    skip = _annotation_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        where = f"{path}:{getattr(node, 'lineno', 0)}:{getattr(node, 'col_offset', 0)}"
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.BitOr)
            and _is_type_expr(node.left)
            and _is_type_expr(node.right)
            and any(_names_a_type(n) for n in ast.walk(node))
        ):
            yield (
                f"{where}: `X | Y` as a value needs Python 3.10 (targets from {MINIMUM}); "
                "use a tuple in isinstance, or typing.Union/Optional"
            )
        elif isinstance(node, ast.Attribute) and node.attr in NEWER_METHODS:
            yield (
                f"{where}: `.{node.attr}()` needs Python {NEWER_METHODS[node.attr]} (targets from "
                f"{MINIMUM}); vermin cannot see it when it does not know the type"
            )
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id in BUILTIN_GENERICS
        ):
            yield (
                f"{where}: `{node.value.id}[...]` as a value needs Python 3.9 (targets from "
                f"{MINIMUM}); use typing.{node.value.id.capitalize()} or a string annotation"
            )


def main(argv: list[str]) -> int:
    files: list[Path] = []
    for arg in argv:
        p = Path(arg)
        files.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    found = [line for f in files for line in problems(f)]
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
