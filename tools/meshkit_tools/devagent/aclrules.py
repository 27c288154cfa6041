# SPDX-License-Identifier: MPL-2.0
"""ACL policy rules as Consul 1.7 reads and applies them: parse, validate, merge, decide.

Rules come as HCL (`service "web" { policy = "write" }`, read by a small reader of the subset
ACL rules use) or as the same structure in JSON
(`{"service": {"web": {"policy": "write"}}}`). Validation answers with Consul's own texts,
Go syntax included (`Invalid service policy: &acl.ServiceRule{...}`): clients and operators
match on them.

Deciding follows acl/policy_authorizer.go: per resource kind, an exact rule for the name wins,
otherwise the longest matching prefix rule; no rule at all defers to the next authorizer in the
chain (the token's policies, then the agent's default policy). Several policies on one token are
merged first, and for the same name the stronger verdict wins: deny, then write, then read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

DENY, READ, WRITE, LIST = "deny", "read", "write", "list"

# Resource kinds with a name (exact rule `kind`, prefix rule `kind_prefix`), and the Go type
# and key field Consul 1.7 prints in its validation errors.
NAMED_KINDS: dict[str, tuple[str, str, bool]] = {
    # kind: (Go type, Go key field, has EnterpriseRule)
    "agent": ("AgentRule", "Node", False),
    "key": ("KeyRule", "Prefix", True),
    "node": ("NodeRule", "Name", False),
    "service": ("ServiceRule", "Name", True),
    "session": ("SessionRule", "Node", False),
    "event": ("EventRule", "Event", False),
    "query": ("PreparedQueryRule", "Prefix", False),
}
GLOBAL_KINDS = ("acl", "keyring", "operator")


class RulesError(ValueError):
    """Rules Consul refuses, with Consul's text (answered as a 500, as Consul does)."""


@dataclass(frozen=True)
class Rule:
    kind: str  # "service", "node", ...
    name: str
    prefix: bool
    policy: str
    intentions: str = ""  # service rules only


@dataclass(frozen=True)
class PolicyRules:
    rules: tuple[Rule, ...] = ()
    globals: tuple[tuple[str, str], ...] = ()  # (acl|keyring|operator, policy)


def _go(rule: Rule) -> str:
    gotype, keyfield, enterprise = NAMED_KINDS[rule.kind]
    parts = [f'{keyfield}:"{rule.name}"', f'Policy:"{rule.policy}"']
    if rule.kind == "service":
        parts.append(f'Intentions:"{rule.intentions}"')
    if enterprise:
        parts.append("EnterpriseRule:acl.EnterpriseRule{}")
    return f"&acl.{gotype}{{{', '.join(parts)}}}"


def _valid(policy: str, allow_list: bool = False) -> bool:
    return policy in (DENY, READ, WRITE) or (allow_list and policy == LIST)


_TOKEN = re.compile(
    r"(?P<ws>[ \t\r]+)|(?P<nl>\n)|(?P<comment>#[^\n]*|//[^\n]*|/\*.*?\*/)"
    r'|(?P<string>"(?:[^"\\\n]|\\.)*")|(?P<ident>[A-Za-z_][A-Za-z0-9_.-]*)'
    r"|(?P<punct>[={},])",
    re.S,
)


def _tokens(text: str) -> list[tuple[str, str, int, int]]:
    """(kind, value, line, column) of the HCL subset ACL rules use."""
    out: list[tuple[str, str, int, int]] = []
    pos, line, col = 0, 1, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise RulesError(
                f"Failed to parse ACL rules: At {line}:{col}: illegal char {text[pos]!r}"
            )
        kind = m.lastgroup or ""
        value = m.group()
        if kind == "string":
            try:
                value = json.loads(value)
            except ValueError:
                raise RulesError(
                    f"Failed to parse ACL rules: At {line}:{col}: bad string {value}"
                ) from None
        if kind in ("string", "ident", "punct"):
            out.append((kind, value, line, col))
        newlines = m.group().count("\n")
        if newlines:
            line += newlines
            col = len(m.group()) - m.group().rfind("\n")
        else:
            col += len(m.group())
        pos = m.end()
    return out


def _load_hcl(text: str) -> dict[str, Any]:
    """Consul's HCL rules: `kind "name" { key = "value" ... }` blocks and `key = "value"`.

    A small reader of its own (no dependency): the dev agent also runs on hosts that only have
    the proxy's packages. Repeated blocks of one kind merge, as HCL 1's decoder does.
    """
    toks = _tokens(text)
    i = 0

    def fail(msg: str) -> RulesError:
        if i < len(toks):
            _, value, line, col = toks[i]
            return RulesError(f"Failed to parse ACL rules: At {line}:{col}: {msg}, got {value!r}")
        return RulesError(f"Failed to parse ACL rules: unexpected end of rules: {msg}")

    def take(kind: str, value: str | None = None) -> str:
        nonlocal i
        if i >= len(toks) or toks[i][0] != kind or (value is not None and toks[i][1] != value):
            raise fail(f"expected {value or kind}")
        i += 1
        return toks[i - 1][1]

    def peek(value: str) -> bool:
        return i < len(toks) and toks[i][0] == "punct" and toks[i][1] == value

    out: dict[str, Any] = {}
    while i < len(toks):
        key = take("ident")
        if peek("="):
            take("punct", "=")
            out[key] = take("string")
            continue
        if i < len(toks) and toks[i][0] == "string":
            label = take("string")
        else:
            raise fail(f"expected a label or '=' after {key}")
        if peek("="):  # `service "x" = { ... }` is HCL too
            take("punct", "=")
        take("punct", "{")
        attrs: dict[str, str] = {}
        while not peek("}"):
            name = take("ident")
            take("punct", "=")
            attrs[name] = take("string")
            if peek(","):
                take("punct", ",")
        take("punct", "}")
        blocks = out.setdefault(key, {})
        if not isinstance(blocks, dict):
            raise fail(f"{key} is both a value and a block")
        blocks[label] = attrs
    return out


def _load(text: str) -> dict[str, Any]:
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RulesError(f"Failed to parse ACL rules: {exc}") from None
        if not isinstance(data, dict):
            raise RulesError("Failed to parse ACL rules: expected an object")
        return data
    return _load_hcl(text)


def parse(text: str) -> PolicyRules:
    """Rules text -> PolicyRules, or RulesError with Consul's message."""
    if not text.strip():
        return PolicyRules()
    data = _load(text)
    rules: list[Rule] = []
    globals_: list[tuple[str, str]] = []
    for kind in GLOBAL_KINDS:
        if kind in data:
            value = data[kind]
            if not isinstance(value, str):
                raise RulesError(f"Failed to parse ACL rules: {kind}: expected a string")
            globals_.append((kind, value))
    for kind in NAMED_KINDS:
        for prefix in (False, True):
            key = f"{kind}_prefix" if prefix else kind
            blocks = data.get(key)
            if blocks is None:
                continue
            if isinstance(blocks, list):  # JSON may repeat blocks as a list of objects
                merged: dict[str, Any] = {}
                for b in blocks:
                    merged.update(b if isinstance(b, dict) else {})
                blocks = merged
            if not isinstance(blocks, dict):
                raise RulesError(f"Failed to parse ACL rules: {key}: expected a block")
            for name, attrs in blocks.items():
                if not isinstance(attrs, dict):
                    raise RulesError(f"Failed to parse ACL rules: {key} {name!r}: expected a block")
                rules.append(
                    Rule(
                        kind=kind,
                        name=str(name),
                        prefix=prefix,
                        policy=str(attrs.get("policy", "")),
                        intentions=str(attrs.get("intentions", "")) if kind == "service" else "",
                    )
                )
    _validate(rules, globals_)
    return PolicyRules(tuple(rules), tuple(globals_))


def _validate(rules: list[Rule], globals_: list[tuple[str, str]]) -> None:
    """The checks of Consul 1.7's parseCurrent, in its order, with its texts."""
    for kind, value in globals_:
        if kind == "acl" and value and not _valid(value):
            raise RulesError(f'Invalid acl policy: "{value}"')
    order = ("agent", "key", "node", "service", "session", "event", "query")
    for kind in order:
        for prefix in (False, True):
            label = f"{kind}_prefix" if prefix else kind
            for rule in (r for r in rules if r.kind == kind and r.prefix == prefix):
                if not _valid(rule.policy, allow_list=kind == "key"):
                    raise RulesError(f"Invalid {label} policy: {_go(rule)}")
                if kind == "service" and rule.intentions and not _valid(rule.intentions):
                    raise RulesError(f"Invalid {label} intentions policy: {_go(rule)}")
    for kind, value in globals_:
        if kind != "acl" and value and not _valid(value):
            raise RulesError(f'Invalid {kind} policy: "{value}"')


def service_identity_rules(service: str) -> PolicyRules:
    """What a service identity grants (Consul 1.7 ServiceIdentity.SyntheticPolicy)."""
    return PolicyRules(
        (
            Rule("service", service, False, WRITE),
            Rule("service", f"{service}-sidecar-proxy", False, WRITE),
            Rule("service", "", True, READ),
            Rule("node", "", True, READ),
        )
    )


def _stronger(a: str, b: str) -> str:
    """Consul's takesPrecedenceOver: deny, then write, then list, then read."""
    for p in (DENY, WRITE, LIST, READ):
        if p in (a, b):
            return p
    return a or b


@dataclass
class Authorizer:
    """One token's merged rules, deciding with longest-prefix-wins, then the default."""

    default_allow: bool
    management: bool = False
    exact: dict[str, dict[str, str]] = field(default_factory=dict)  # kind -> name -> policy
    prefixes: dict[str, dict[str, str]] = field(default_factory=dict)
    globals: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls, policies: list[PolicyRules], default_allow: bool, management: bool = False
    ) -> Authorizer:
        auth = cls(default_allow=default_allow, management=management)
        for pol in policies:
            for kind, value in pol.globals:
                if value:
                    auth.globals[kind] = _stronger(auth.globals.get(kind, ""), value)
            for rule in pol.rules:
                auth._add(rule.kind, rule.name, rule.prefix, rule.policy)
                if rule.kind == "service":
                    # An unset `intentions` follows the service policy: read or write give
                    # intention read, deny denies (policy_authorizer.go).
                    intent = rule.intentions or (DENY if rule.policy == DENY else READ)
                    auth._add("intention", rule.name, rule.prefix, intent)
        return auth

    def _add(self, kind: str, name: str, prefix: bool, policy: str) -> None:
        table = (self.prefixes if prefix else self.exact).setdefault(kind, {})
        table[name] = _stronger(table.get(name, ""), policy)

    def lookup(self, kind: str, name: str) -> str | None:
        """The policy that applies to `name`: its exact rule, else the longest prefix rule."""
        exact = self.exact.get(kind, {})
        if name in exact:
            return exact[name]
        best: str | None = None
        best_len = -1
        for prefix, policy in self.prefixes.get(kind, {}).items():
            if name.startswith(prefix) and len(prefix) > best_len:
                best, best_len = policy, len(prefix)
        return best

    def _allowed(self, policy: str | None, write: bool) -> bool:
        if self.management:
            return True
        if policy is None:
            return self.default_allow
        if policy == DENY:
            return False
        return policy == WRITE if write else policy in (READ, WRITE, LIST)

    def read(self, kind: str, name: str) -> bool:
        return self._allowed(self.lookup(kind, name), write=False)

    def write(self, kind: str, name: str) -> bool:
        return self._allowed(self.lookup(kind, name), write=True)

    def key_list(self, name: str) -> bool:
        policy = self.lookup("key", name)
        if self.management:
            return True
        if policy is None:
            return self.default_allow
        return policy in (LIST, WRITE)

    def global_read(self, kind: str) -> bool:
        return self._allowed(self.globals.get(kind), write=False)

    def global_write(self, kind: str) -> bool:
        return self._allowed(self.globals.get(kind), write=True)

    # The names the HTTP handlers use.
    def service_read(self, name: str) -> bool:
        return self.read("service", name)

    def service_write(self, name: str) -> bool:
        return self.write("service", name)

    def node_read(self, name: str) -> bool:
        return self.read("node", name)

    def node_write(self, name: str) -> bool:
        return self.write("node", name)

    def agent_read(self, name: str) -> bool:
        return self.read("agent", name)

    def agent_write(self, name: str) -> bool:
        return self.write("agent", name)

    def query_read(self, name: str) -> bool:
        return self.read("query", name)

    def query_write(self, name: str) -> bool:
        return self.write("query", name)

    def key_read(self, name: str) -> bool:
        return self.read("key", name)

    def key_write(self, name: str) -> bool:
        return self.write("key", name)

    def intention_read(self, name: str) -> bool:
        return self.read("intention", name)

    def intention_write(self, name: str) -> bool:
        return self.write("intention", name)

    def operator_read(self) -> bool:
        return self.global_read("operator")

    def operator_write(self) -> bool:
        return self.global_write("operator")

    def acl_read(self) -> bool:
        return self.global_read("acl")

    def acl_write(self) -> bool:
        return self.global_write("acl")
