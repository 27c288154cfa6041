# SPDX-License-Identifier: MPL-2.0
"""What Nomad's `POST /v1/jobs/parse` makes of a job file, for the Nomad double.

No Nomad binary runs here, so the double's parse answers are derived, not recorded: this reads
a job file with python-hcl2 and writes the API JSON (Go field names, durations in
nanoseconds, only the fields the file sets: `Canonicalize: false`) for the jobspec subset the
test jobs use. The one thing the two syntaxes disagree on is written down here:

- `hcl1` (Nomad < 1.0): `${...}` is kept as written (Nomad interpolates it when the task
  starts) and `$${` is NOT unescaped; it reaches the job as `$${`.
- `hcl2` (Nomad >= 1.0): `$${` means a literal `${` and `%%{` a literal `%{`.

Anything outside the subset is refused (the double answers 400), never guessed.
"""

from __future__ import annotations

import json
import re
from typing import Any

import hcl2

_DURATION_RE = re.compile(r"([0-9]+)(ns|us|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration for whole numbers ("1h30m", "25s"), as Nomad's jobspec uses it."""
    parts = _DURATION_RE.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UnknownField(f"duration {text!r}")
    return sum(int(n) * _UNIT_NS[u] for n, u in parts)


class UnknownField(ValueError):
    """A job file field this derived parser does not model."""


_HEREDOC_RE = re.compile(r'^"?<<-?([A-Za-z_]+)\n(.*)\n\1"?$', re.S)


def _text(raw: str, syntax: str) -> str:
    m = _HEREDOC_RE.match(raw)
    if m:
        value = m.group(2) + "\n"
    elif raw.startswith('"') and raw.endswith('"'):
        value = json.loads(raw)
    else:
        value = raw
    if syntax == "hcl2":
        value = value.replace("$${", "${").replace("%%{", "%{")
    return value


def _value(raw: Any, syntax: str) -> Any:
    if isinstance(raw, str):
        if raw in ("true", "false"):
            return raw == "true"
        return _text(raw, syntax)
    if isinstance(raw, list):
        return [_value(v, syntax) for v in raw]
    if isinstance(raw, dict):
        return {
            _text(k, syntax): _value(v, syntax) for k, v in raw.items() if not k.startswith("__")
        }
    return raw


def _blocks(body: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [b for b in body.get(kind) or [] if isinstance(b, dict)]


def _labelled(body: dict[str, Any], kind: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for b in _blocks(body, kind):
        for label, inner in b.items():
            if not label.startswith("__"):
                out.append((json.loads(label), inner))
    return out


def _attrs(
    body: dict[str, Any], known: dict[str, str], blocks: set[str], where: str, syntax: str
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in body.items():
        if key.startswith("__"):
            continue
        if key in blocks:
            continue
        if key not in known:
            raise UnknownField(f"{where}.{key}")
        out[known[key]] = _value(raw, syntax)
    return out


def _map_block(body: dict[str, Any], kind: str, syntax: str) -> dict[str, Any] | None:
    found = _blocks(body, kind)
    if not found:
        raw = body.get(kind)
        return dict(_value(raw, syntax)) if isinstance(raw, dict) else None
    return dict(_value(found[0], syntax))


def _durations(out: dict[str, Any], *keys: str) -> None:
    for key in keys:
        if isinstance(out.get(key), str):
            out[key] = parse_duration(out[key])


def _constraints(body: dict[str, Any], syntax: str) -> list[dict[str, Any]] | None:
    found = [
        {
            "LTarget": _value(c.get("attribute", '""'), syntax),
            "RTarget": _value(c.get("value", '""'), syntax),
            "Operand": _value(c.get("operator", '"="'), syntax),
        }
        for c in _blocks(body, "constraint")
    ]
    return found or None


def _resources(body: dict[str, Any], syntax: str) -> dict[str, Any] | None:
    found = _blocks(body, "resources")
    if not found:
        return None
    return _attrs(found[0], {"cpu": "CPU", "memory": "MemoryMB"}, set(), "resources", syntax)


def _task(name: str, body: dict[str, Any], syntax: str, where: str) -> dict[str, Any]:
    blocks = {
        "config",
        "env",
        "resources",
        "template",
        "volume_mount",
        "artifact",
        "vault",
        "constraint",
        "meta",
    }
    out = _attrs(body, {"driver": "Driver", "user": "User"}, blocks, where, syntax)
    if name:
        out["Name"] = name
    config = _map_block(body, "config", syntax)
    if config is not None:
        out["Config"] = config
    for kind, key in (("env", "Env"), ("meta", "Meta")):
        value = _map_block(body, kind, syntax)
        if value is not None:
            out[key] = value
    resources = _resources(body, syntax)
    if resources is not None:
        out["Resources"] = resources
    templates = []
    for t in _blocks(body, "template"):
        tpl = _attrs(
            t,
            {
                "data": "EmbeddedTmpl",
                "destination": "DestPath",
                "change_mode": "ChangeMode",
                "change_signal": "ChangeSignal",
                "env": "Envvars",
                "perms": "Perms",
                "left_delimiter": "LeftDelim",
                "right_delimiter": "RightDelim",
            },
            set(),
            f"{where}.template",
            syntax,
        )
        templates.append(tpl)
    if templates:
        out["Templates"] = templates
    mounts = [
        _attrs(
            m,
            {"volume": "Volume", "destination": "Destination", "read_only": "ReadOnly"},
            set(),
            f"{where}.volume_mount",
            syntax,
        )
        for m in _blocks(body, "volume_mount")
    ]
    if mounts:
        out["VolumeMounts"] = mounts
    artifacts = [
        _attrs(
            a,
            {"source": "GetterSource", "destination": "RelativeDest", "mode": "GetterMode"},
            set(),
            f"{where}.artifact",
            syntax,
        )
        for a in _blocks(body, "artifact")
    ]
    if artifacts:
        out["Artifacts"] = artifacts
    for v in _blocks(body, "vault"):
        out["Vault"] = _attrs(
            v,
            {"policies": "Policies", "change_mode": "ChangeMode", "env": "Env"},
            set(),
            f"{where}.vault",
            syntax,
        )
    constraints = _constraints(body, syntax)
    if constraints:
        out["Constraints"] = constraints
    return out


def _upstream(body: dict[str, Any], syntax: str, where: str) -> dict[str, Any]:
    out = _attrs(
        body,
        {
            "destination_name": "DestinationName",
            "destination_type": "DestinationType",
            "local_bind_port": "LocalBindPort",
            "local_bind_address": "LocalBindAddress",
            "datacenter": "Datacenter",
        },
        {"config"},
        where,
        syntax,
    )
    config = _map_block(body, "config", syntax)
    if config is not None:
        out["Config"] = config
    return out


def _connect(body: dict[str, Any], syntax: str, where: str) -> dict[str, Any]:
    out = _attrs(body, {"native": "Native"}, {"sidecar_service", "sidecar_task"}, where, syntax)
    for ss in _blocks(body, "sidecar_service"):
        proxy: dict[str, Any] = {}
        for p in _blocks(ss, "proxy"):
            ups = [_upstream(u, syntax, f"{where}.upstreams") for u in _blocks(p, "upstreams")]
            if ups:
                proxy["Upstreams"] = ups
            config = _map_block(p, "config", syntax)
            if config is not None:
                proxy["Config"] = config
            _attrs(p, {}, {"upstreams", "config"}, f"{where}.proxy", syntax)
        out["SidecarService"] = {"Proxy": proxy}
    for st in _blocks(body, "sidecar_task"):
        out["SidecarTask"] = _task("", st, syntax, f"{where}.sidecar_task")
    return out


def _service(body: dict[str, Any], syntax: str, where: str) -> dict[str, Any]:
    out = _attrs(
        body,
        {"name": "Name", "port": "PortLabel", "task": "TaskName", "tags": "Tags"},
        {"meta", "connect", "check"},
        where,
        syntax,
    )
    if isinstance(out.get("PortLabel"), int):
        out["PortLabel"] = str(out["PortLabel"])
    meta = _map_block(body, "meta", syntax)
    if meta is not None:
        out["Meta"] = meta
    for c in _blocks(body, "connect"):
        out["Connect"] = _connect(c, syntax, f"{where}.connect")
    checks = []
    for c in _blocks(body, "check"):
        check = _attrs(
            c,
            {
                "name": "Name",
                "type": "Type",
                "port": "PortLabel",
                "path": "Path",
                "interval": "Interval",
                "timeout": "Timeout",
            },
            set(),
            f"{where}.check",
            syntax,
        )
        _durations(check, "Interval", "Timeout")
        checks.append(check)
    if checks:
        out["Checks"] = checks
    return out


def _update(body: dict[str, Any], syntax: str, where: str) -> dict[str, Any]:
    out = _attrs(
        body,
        {
            "max_parallel": "MaxParallel",
            "health_check": "HealthCheck",
            "min_healthy_time": "MinHealthyTime",
            "healthy_deadline": "HealthyDeadline",
            "progress_deadline": "ProgressDeadline",
            "auto_revert": "AutoRevert",
            "canary": "Canary",
        },
        set(),
        where,
        syntax,
    )
    _durations(out, "MinHealthyTime", "HealthyDeadline", "ProgressDeadline")
    return out


def _group(name: str, body: dict[str, Any], syntax: str) -> dict[str, Any]:
    where = f"group.{name}"
    blocks = {"network", "service", "task", "volume", "restart", "update", "constraint", "meta"}
    out = _attrs(body, {"count": "Count"}, blocks, where, syntax)
    out["Name"] = name
    networks = []
    for n in _blocks(body, "network"):
        net = _attrs(n, {"mode": "Mode"}, {"port"}, f"{where}.network", syntax)
        for label, port in _labelled(n, "port"):
            entry = {"Label": label}
            attrs = _attrs(port, {"static": "Value", "to": "To"}, set(), f"{where}.port", syntax)
            entry.update(attrs)
            key = "ReservedPorts" if "Value" in attrs else "DynamicPorts"
            net.setdefault(key, []).append(entry)
        networks.append(net)
    if networks:
        out["Networks"] = networks
    services = [_service(s, syntax, f"{where}.service") for s in _blocks(body, "service")]
    if services:
        out["Services"] = services
    volumes = {}
    for label, v in _labelled(body, "volume"):
        vol = _attrs(
            v,
            {"type": "Type", "source": "Source", "read_only": "ReadOnly"},
            set(),
            f"{where}.volume",
            syntax,
        )
        volumes[label] = {"Name": label, **vol}
    if volumes:
        out["Volumes"] = volumes
    for r in _blocks(body, "restart"):
        restart = _attrs(
            r,
            {"attempts": "Attempts", "interval": "Interval", "delay": "Delay", "mode": "Mode"},
            set(),
            f"{where}.restart",
            syntax,
        )
        _durations(restart, "Interval", "Delay")
        out["RestartPolicy"] = restart
    for u in _blocks(body, "update"):
        out["Update"] = _update(u, syntax, f"{where}.update")
    constraints = _constraints(body, syntax)
    if constraints:
        out["Constraints"] = constraints
    meta = _map_block(body, "meta", syntax)
    if meta is not None:
        out["Meta"] = meta
    out["Tasks"] = [_task(t, b, syntax, f"{where}.task.{t}") for t, b in _labelled(body, "task")]
    return out


def parse_job(text: str, syntax: str) -> dict[str, Any]:
    """The job object `jobs/parse` answers for `text` (UnknownField / hcl2 errors otherwise)."""
    doc = hcl2.loads(text)
    ((job_id, body),) = _labelled(doc, "job")
    blocks = {"group", "constraint", "update", "meta"}
    out = _attrs(
        body,
        {
            "datacenters": "Datacenters",
            "type": "Type",
            "priority": "Priority",
            "namespace": "Namespace",
            "region": "Region",
        },
        blocks,
        "job",
        syntax,
    )
    out = {"ID": job_id, "Name": job_id, **out}
    constraints = _constraints(body, syntax)
    if constraints:
        out["Constraints"] = constraints
    for u in _blocks(body, "update"):
        out["Update"] = _update(u, syntax, "job.update")
    meta = _map_block(body, "meta", syntax)
    if meta is not None:
        out["Meta"] = meta
    out["TaskGroups"] = [_group(g, b, syntax) for g, b in _labelled(body, "group")]
    return out
