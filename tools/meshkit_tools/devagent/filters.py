# SPDX-License-Identifier: MPL-2.0
"""`?filter=`: the subset of Consul's go-bexpr language that discovery clients use.

Supported: `Sel == "v"`, `!=`, `"v" in Sel`, `not in`, `Sel contains "v"`, `not contains`,
`Sel is empty`, `is not empty`, `and`, `or`, `not`, parentheses. Selectors are dotted
paths into the response objects (`Kind`, `Proxy.DestinationServiceID`, `Service.Tags`).
Anything else is refused with 400 rather than silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Predicate = Callable[[Any], bool]
_TOKEN = re.compile(r'\s*(?:(==|!=|\(|\))|"((?:[^"\\]|\\.)*)"|([A-Za-z0-9_.\-/:*]+))')


class FilterError(ValueError):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FilterError(f"unexpected input at {text[pos : pos + 10]!r}")
        op, quoted, word = m.groups()
        if op:
            out.append(("op", op))
        elif quoted is not None:
            out.append(("str", quoted.replace('\\"', '"')))
        else:
            out.append(("word", word))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def _select(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(obj, dict):
            obj = obj.get(part)
        else:
            return None
    return obj


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "" if v is None else str(v)


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.toks = tokens
        self.i = 0

    def peek(self, value: str | None = None) -> bool:
        if self.i >= len(self.toks):
            return False
        return value is None or (self.toks[self.i][1] == value and self.toks[self.i][0] != "str")

    def take(self) -> tuple[str, str]:
        if self.i >= len(self.toks):
            raise FilterError("unexpected end of expression")
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        kind, got = self.take()
        if got != value or kind == "str":
            raise FilterError(f"expected {value!r}, got {got!r}")

    def expr(self) -> Predicate:
        left = self.conj()
        while self.peek("or"):
            self.take()
            right = self.conj()
            left = (lambda a, b: lambda o: a(o) or b(o))(left, right)
        return left

    def conj(self) -> Predicate:
        left = self.unary()
        while self.peek("and"):
            self.take()
            right = self.unary()
            left = (lambda a, b: lambda o: a(o) and b(o))(left, right)
        return left

    def unary(self) -> Predicate:
        if self.peek("not"):
            self.take()
            inner = self.unary()
            return lambda o: not inner(o)
        if self.peek("("):
            self.take()
            inner = self.expr()
            self.expect(")")
            return inner
        return self.match()

    def match(self) -> Predicate:
        kind, first = self.take()
        if kind == "str" or (self.peek("in") or self.peek("not")):
            value = first
            negate = False
            if self.peek("not"):
                self.take()
                negate = True
            self.expect("in")
            _, sel = self.take()
            return lambda o: negate != _contains(_select(o, sel), value)
        sel = first
        _, op = self.take()
        if op in ("==", "!="):
            _, value = self.take()
            eq = op == "=="
            return lambda o: (_text(_select(o, sel)) == value) == eq
        if op == "contains":
            _, value = self.take()
            return lambda o: _contains(_select(o, sel), value)
        if op == "not":
            self.expect("contains")
            _, value = self.take()
            return lambda o: not _contains(_select(o, sel), value)
        if op == "is":
            negate = False
            if self.peek("not"):
                self.take()
                negate = True
            self.expect("empty")
            return lambda o: negate != (not _select(o, sel))
        raise FilterError(f"unsupported operator {op!r}")


def _contains(container: Any, value: str) -> bool:
    if isinstance(container, (list, dict)):
        return any(_text(v) == value for v in container)
    if isinstance(container, str):
        return value in container
    return False


def compile_filter(text: str) -> Predicate:
    try:
        parser = _Parser(_tokens(text))
        pred = parser.expr()
        if parser.i != len(parser.toks):
            raise FilterError(f"unexpected {parser.toks[parser.i][1]!r}")
    except FilterError as exc:
        raise FilterError(f"Failed to create boolean expression evaluator: {exc}") from None
    return pred
