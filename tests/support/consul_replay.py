# SPDX-License-Identifier: MPL-2.0
"""Replay a session recorded from a real Consul against the dev agent and list every deviation.

A recording directory holds `requests.json` (each request in order: the file stem of its answer,
method, path, body and which token was sent) and, per request, `<stem>.headers` (status line and
headers) plus `<stem>.json` or `<stem>.txt` (the body). The replayer sends each request to the
dev agent and compares, request by request:

- the status code;
- the Content-Type and the presence of Consul's query-meta headers;
- a text body to the letter (error texts are part of the contract: clients match on them);
- a JSON body by shape AND value: the same keys, the same types, `null` where Consul sent
  `null`, the same scalars, except values that differ between any two agents (IDs, indexes,
  times, hashes, certificates), which are compared by kind only.

IDs the recording learnt (an intention's ID, a token's AccessorID, the trust domain) are mapped
to ours as they appear, so later paths and bodies that name them are rewritten before sending.
Tokens are named by label in the recording (`master`, `unknown`, a service name for a
service-identity token created earlier in the session, `web (deleted)` for a token used after
its deletion); `resolve_token` turns a label into the secret this run uses.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.devagent import DevAgent

EDGES = Path("/work/shared/fixtures/consul-1.7.14-edges")

# Headers compared by presence: their values differ between any two agents.
META_HEADERS = (
    "X-Consul-Index",
    "X-Consul-Knownleader",
    "X-Consul-Lastcontact",
    "X-Consul-Effective-Consistency",
    "X-Consul-Default-Acl-Policy",
    "X-Consul-Translate-Addresses",
)
# Keys whose values differ between any two agents (compared by JSON kind only).
VOLATILE_KEYS = frozenset(
    {
        "ID",
        "AccessorID",
        "SecretID",
        "CreateIndex",
        "ModifyIndex",
        "Index",
        "LastIndex",
        "Hash",
        "CreateTime",
        "ContentHash",
        "SerialNumber",
        "CertPEM",
        "PrivateKeyPEM",
        "RootCert",
        "IntermediateCerts",
        "SigningKeyID",
        "SigningCert",
        "ValidAfter",
        "ValidBefore",
        "NotBefore",
        "NotAfter",
        "Precedence",
        "RaftIndex",
        "LeafSigningCert",
        "ExternalTrustDomain",
        "LastContact",
        "Name" + "Hash",
    }
)
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
UNKNOWN_TOKEN = str(uuid.UUID(int=0x5EC7E7))


@dataclass(frozen=True)
class Exchange:
    """One recorded request and Consul's answer to it."""

    stem: str
    method: str
    path: str
    token: str | None
    body: Any
    status: int
    headers: dict[str, str]
    json_body: Any
    text_body: str | None
    has_json: bool

    @property
    def acl(self) -> bool:
        return "-acl-" in self.stem


def load_session(directory: Path = EDGES) -> list[Exchange]:
    out = []
    for item in json.loads((directory / "requests.json").read_text()):
        stem = item["file"]
        lines = (directory / f"{stem}.headers").read_text().splitlines()
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().title()] = v.strip()
        jpath, tpath = directory / f"{stem}.json", directory / f"{stem}.txt"
        out.append(
            Exchange(
                stem=stem,
                method=item["method"],
                path=item["path"],
                token=item.get("token"),
                body=item.get("body"),
                status=int(lines[0].split()[1]),
                headers=headers,
                json_body=json.loads(jpath.read_text()) if jpath.exists() else None,
                text_body=tpath.read_text() if tpath.exists() else None,
                has_json=jpath.exists(),
            )
        )
    return out


@dataclass
class Replayer:
    """Sends recorded requests to one dev agent and collects deviations as readable lines."""

    agent: DevAgent
    # stem or "stem:path" -> why we differ on purpose. Keep it empty: Consul wins.
    deviations: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)  # recorded value -> ours
    secrets: dict[str, str] = field(default_factory=dict)  # token label -> our secret

    def prime(self, session: list[Exchange]) -> None:
        """Map the recording's trust domain to ours before any answer names it."""
        ours = self.agent.trust_domain()  # asked with the master token when ACLs are on
        for ex in session:
            recorded = ex.json_body.get("TrustDomain") if isinstance(ex.json_body, dict) else None
            if isinstance(recorded, str) and recorded != ours:
                self.ids.setdefault(recorded, ours)

    def resolve_token(self, label: str | None) -> str:
        if label is None:
            return ""  # anonymous: send no token at all
        if label == "master":
            return self.agent.acl_master_token or ""
        if label == "unknown":
            return UNKNOWN_TOKEN
        name = label.removesuffix(" (deleted)")
        if name not in self.secrets:
            raise AssertionError(f"token label {label!r} used before a token for it was created")
        return self.secrets[name]

    def rewrite(self, text: str) -> str:
        for recorded, ours in self.ids.items():
            text = text.replace(recorded, ours)
        return text

    def send(self, ex: Exchange) -> Any:
        """Replay one exchange; returns our decoded body (JSON or text)."""
        path = self.rewrite(ex.path)
        raw = None if ex.body is None else self.rewrite(json.dumps(ex.body)).encode()
        status, headers, body = self.agent.request(
            ex.method, path, raw=raw, token=self.resolve_token(ex.token)
        )
        ours_h = {k.title(): v for k, v in headers.items()}
        if ex.stem in self.deviations:
            return body
        if status != ex.status:
            self.problems.append(f"{ex.stem}: status {status}, Consul {ex.status}: {body!r:.300}")
        want_ct, got_ct = ex.headers.get("Content-Type"), ours_h.get("Content-Type")
        if want_ct != got_ct and f"{ex.stem}:Content-Type" not in self.deviations:
            self.problems.append(f"{ex.stem}: Content-Type {got_ct!r}, Consul {want_ct!r}")
        for h in META_HEADERS:
            if (h in ex.headers) != (h in ours_h) and f"{ex.stem}:{h}" not in self.deviations:
                self.problems.append(
                    f"{ex.stem}: header {h} {'missing' if h in ex.headers else 'extra'}"
                )
        if ex.has_json:
            if isinstance(body, str):
                self.problems.append(f"{ex.stem}: Consul sent JSON, we sent text {body!r:.200}")
            else:
                self._learn(ex.json_body, body)
                diff(ex.json_body, body, ex.stem, self.problems, self.deviations, self.rewrite)
        elif ex.text_body is not None:
            ours_text = body if isinstance(body, str) else json.dumps(body)
            if ours_text != self.rewrite(ex.text_body):
                self.problems.append(
                    f"{ex.stem}: body {ours_text!r:.300}, Consul {ex.text_body!r:.300}"
                )
        return body

    def _learn(self, recorded: Any, ours: Any) -> None:
        """Map the recording's IDs to ours, and remember the secrets of created tokens."""
        if isinstance(recorded, dict) and isinstance(ours, dict):
            for key in ("ID", "AccessorID", "TrustDomain"):
                rv, ov = recorded.get(key), ours.get(key)
                if isinstance(rv, str) and isinstance(ov, str) and rv and rv != ov:
                    self.ids.setdefault(rv, ov)
            secret = ours.get("SecretID")
            for ident in ours.get("ServiceIdentities") or []:
                if isinstance(secret, str) and isinstance(ident, dict):
                    self.secrets.setdefault(str(ident.get("ServiceName")), secret)
            for key in recorded.keys() & ours.keys():
                self._learn(recorded[key], ours[key])
        elif isinstance(recorded, list) and isinstance(ours, list):
            for r, o in zip(recorded, ours, strict=False):
                self._learn(r, o)


def _kind(value: Any) -> str:
    kinds = {bool: "bool", int: "number", float: "number", str: "string", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _volatile(key: str, value: Any) -> bool:
    if key in VOLATILE_KEYS:
        return True
    return isinstance(value, str) and bool(
        _UUID.match(value) or _TIME.match(value) or "-----BEGIN" in value
    )


def diff(
    recorded: Any,
    ours: Any,
    path: str,
    out: list[str],
    deviations: dict[str, str],
    rewrite: Any = lambda s: s,
    key: str = "",
) -> None:
    """Append one line per difference in shape or (non-volatile) value."""
    if path in deviations:
        return
    if isinstance(recorded, dict):
        if not isinstance(ours, dict):
            out.append(f"{path}: Consul sent an object, we sent {_kind(ours)}")
            return
        for k in sorted(recorded.keys() - ours.keys()):
            if f"{path}.{k}" not in deviations:
                out.append(f"{path}.{k}: missing")
        for k in sorted(ours.keys() - recorded.keys()):
            if f"{path}.{k}" not in deviations:
                out.append(f"{path}.{k}: extra")
        for k in sorted(recorded.keys() & ours.keys()):
            diff(recorded[k], ours[k], f"{path}.{k}", out, deviations, rewrite, k)
    elif isinstance(recorded, list):
        if not isinstance(ours, list):
            out.append(f"{path}: Consul sent a list, we sent {_kind(ours)}")
            return
        if len(recorded) != len(ours):
            out.append(f"{path}: Consul sent {len(recorded)} items, we sent {len(ours)}")
            return
        for i, (r, o) in enumerate(zip(recorded, ours, strict=True)):
            diff(r, o, f"{path}[{i}]", out, deviations, rewrite, key)
    elif _kind(recorded) != _kind(ours):
        out.append(f"{path}: Consul sent {_kind(recorded)}, we sent {_kind(ours)}")
    elif _volatile(key, recorded):
        return
    elif isinstance(recorded, str):
        if rewrite(recorded) != ours:
            out.append(f"{path}: {ours!r:.120}, Consul {recorded!r:.120}")
    elif recorded != ours:
        out.append(f"{path}: {ours!r}, Consul {recorded!r}")
