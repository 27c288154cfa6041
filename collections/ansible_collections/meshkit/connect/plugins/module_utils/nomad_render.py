# SPDX-License-Identifier: MPL-2.0
"""Write a `JobSpec` as Nomad API JSON or as HCL2 text, deciding nothing.

Rendered from data, not from a Jinja2 template: nothing here interprets `{{ }}`, so Nomad's
own consul-template blocks pass through byte for byte, and the renderer ships to the target
inside module_utils (AnsiballZ carries no template files).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import (
    format_duration,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_jobspec import (
    CheckSpec,
    GroupSpec,
    JobSpec,
    PortSpec,
    ServiceSpec,
    TaskSpec,
    UpstreamSpec,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_settings import (
    Resources,
    RestartPolicy,
    Template,
    UpdatePolicy,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_versions import NomadVersion

# --- API JSON (Go field names, durations in nanoseconds) ------------------------------------


def _api_resources(r: Resources) -> dict[str, Any]:
    return {"CPU": r.cpu, "MemoryMB": r.memory_mb}


def _api_template(t: Template) -> dict[str, Any]:
    out: dict[str, Any] = {
        "EmbeddedTmpl": t.data,
        "DestPath": t.destination,
        "ChangeMode": t.change_mode,
    }
    if t.change_signal:
        out["ChangeSignal"] = t.change_signal
    if t.env:
        out["Envvars"] = True
    if t.perms:
        out["Perms"] = t.perms
    if t.left_delimiter:
        out["LeftDelim"] = t.left_delimiter
    if t.right_delimiter:
        out["RightDelim"] = t.right_delimiter
    return out


def _api_task(t: TaskSpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Name": t.name,
        "Driver": t.driver,
        "Config": dict(t.config),
        "Resources": _api_resources(t.resources),
    }
    if t.env:
        out["Env"] = dict(t.env)
    if t.user:
        out["User"] = t.user
    if t.templates:
        out["Templates"] = [_api_template(x) for x in t.templates]
    return out


def _api_upstream(u: UpstreamSpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "DestinationName": u.destination_name,
        "LocalBindPort": u.local_bind_port,
    }
    if u.destination_type:
        out["DestinationType"] = u.destination_type
    if u.datacenter:
        out["Datacenter"] = u.datacenter
    if u.local_bind_address:
        out["LocalBindAddress"] = u.local_bind_address
    if u.config:
        out["Config"] = dict(u.config)
    return out


def _api_check(c: CheckSpec) -> dict[str, Any]:
    return {
        "Name": c.name,
        "Type": c.kind,
        "PortLabel": c.port_label,
        "Interval": c.interval,
        "Timeout": c.timeout,
    }


def _api_service(s: ServiceSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"Name": s.name, "PortLabel": s.port}
    if s.tags:
        out["Tags"] = list(s.tags)
    if s.meta:
        out["Meta"] = dict(s.meta)
    if s.task:
        out["TaskName"] = s.task
    if s.checks:
        out["Checks"] = [_api_check(c) for c in s.checks]
    if s.native:
        out["Connect"] = {"Native": True}
    elif s.sidecar is not None:
        proxy: dict[str, Any] = {"Upstreams": [_api_upstream(u) for u in s.sidecar.upstreams]}
        if s.sidecar.config:
            proxy["Config"] = dict(s.sidecar.config)
        connect: dict[str, Any] = {"Native": False, "SidecarService": {"Proxy": proxy}}
        if s.sidecar.task is not None:
            task = _api_task(s.sidecar.task)
            del task["Name"]  # Nomad names it connect-proxy-<service>
            connect["SidecarTask"] = task
        out["Connect"] = connect
    return out


def _api_update(u: UpdatePolicy) -> dict[str, Any]:
    return {
        "MaxParallel": u.max_parallel,
        "HealthCheck": u.health_check,
        "MinHealthyTime": u.min_healthy_time,
        "HealthyDeadline": u.healthy_deadline,
        "ProgressDeadline": u.progress_deadline,
        "AutoRevert": u.auto_revert,
        "Canary": u.canary,
    }


def _api_restart(r: RestartPolicy) -> dict[str, Any]:
    return {"Attempts": r.attempts, "Interval": r.interval, "Delay": r.delay, "Mode": r.mode}


def _api_group(g: GroupSpec, job: JobSpec) -> dict[str, Any]:
    network: dict[str, Any] = {"Mode": g.network_mode}
    dynamic = [p for p in g.ports if p.static is None]
    reserved = [p for p in g.ports if p.static is not None]
    if dynamic:
        network["DynamicPorts"] = [
            {"Label": p.label, **({"To": p.to} if p.to is not None else {})} for p in dynamic
        ]
    if reserved:
        network["ReservedPorts"] = [
            {"Label": p.label, "Value": p.static, **({"To": p.to} if p.to is not None else {})}
            for p in reserved
        ]
    out: dict[str, Any] = {
        "Name": g.name,
        "Count": g.count,
        "Networks": [network],
        "Services": [_api_service(s) for s in g.services],
        "Tasks": [_api_task(t) for t in g.tasks],
    }
    if job.update is not None:
        out["Update"] = _api_update(job.update)
    if job.restart is not None:
        out["RestartPolicy"] = _api_restart(job.restart)
    return out


def to_api(job: JobSpec) -> dict[str, Any]:
    """The bare job object (wrap it as {"Job": ...} to register)."""
    out: dict[str, Any] = {
        "ID": job.job_id,
        "Name": job.job_id,
        "Type": job.job_type,
        "Datacenters": list(job.datacenters),
        "Priority": job.priority,
    }
    if job.namespace:
        out["Namespace"] = job.namespace
    if job.region:
        out["Region"] = job.region
    out["TaskGroups"] = [_api_group(g, job) for g in job.groups]
    return out


def to_json(job: JobSpec) -> str:
    """Deterministic text of `{"Job": ...}`, ready for `nomad job run -json` or the API."""
    return json.dumps({"Job": to_api(job)}, indent=2, sort_keys=True) + "\n"


# --- HCL2 ------------------------------------------------------------------------------------

_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


HCL1, HCL2 = "hcl1", "hcl2"


def hcl_syntax(version: NomadVersion) -> str:
    """Nomad before 1.0 parses job files as HCL1, which keeps `${...}` as written and does not
    unescape `$${`; from 1.0 on job files are HCL2, where `$${` is how to write `${`."""
    return HCL2 if version >= NomadVersion(1, 0, 0) else HCL1


def _escape_interpolation(text: str, syntax: str) -> str:
    if syntax == HCL1:
        return text  # HCL1 leaves ${...} for Nomad to interpolate at run time, like HCL2's $${
    return text.replace("${", "$${").replace("%{", "%%{")


def hcl_string(text: str, syntax: str = HCL2) -> str:
    """A quoted HCL string whose value (for `syntax`) is exactly `text`."""
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{_escape_interpolation(escaped, syntax)}"'


def _heredoc(text: str, indent: str, syntax: str = HCL2) -> str | None:
    """`<<EOH` form for multi-line text that ends in a newline; None if it cannot be one."""
    if not text.endswith("\n") or text.count("\n") < 2 or "\r" in text:
        return None
    marker = "EOH"
    while any(line.strip() == marker for line in text.split("\n")):
        marker += "_"
    body = _escape_interpolation(text, syntax)
    return f"<<{marker}\n{body}{marker}"


def hcl_value(value: Any, indent: str = "", syntax: str = HCL2) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        return hcl_string(value, syntax)
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        inner = indent + "  "
        items = [
            f"{inner}{_hcl_key(str(k))} = {hcl_value(v, inner, syntax)}"
            for k, v in sorted(value.items())
        ]
        return "{\n" + "\n".join(items) + f"\n{indent}}}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(hcl_value(v, indent, syntax) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as HCL")


def _hcl_key(key: str) -> str:
    return key if _IDENT_RE.match(key) else hcl_string(key)


class _Writer:
    def __init__(self, syntax: str = HCL2, depth: int = 0) -> None:
        self.lines: list[str] = []
        self.depth = depth
        self.syntax = syntax

    @property
    def indent(self) -> str:
        return "  " * self.depth

    def attr(self, key: str, value: Any) -> None:
        self.lines.append(f"{self.indent}{key} = {hcl_value(value, self.indent, self.syntax)}")

    def text_attr(self, key: str, text: str) -> None:
        doc = _heredoc(text, self.indent, self.syntax)
        self.lines.append(f"{self.indent}{key} = {doc if doc else hcl_string(text, self.syntax)}")

    def open(self, kind: str, *labels: str) -> None:
        head = " ".join([kind, *(hcl_string(label) for label in labels)])
        self.lines.append(f"{self.indent}{head} {{")
        self.depth += 1

    def close(self) -> None:
        self.depth -= 1
        if self.lines and self.lines[-1].endswith(" {"):
            self.lines[-1] += "}"  # an empty block stays on one line: port "mesh" {}
        else:
            self.lines.append(f"{self.indent}}}")

    def blank(self) -> None:
        self.lines.append("")

    def map_block(self, kind: str, values: Mapping[str, Any]) -> None:
        """`env { A = "1" }`, or `env = { "a.b" = "1" }` when a key is no HCL identifier."""
        if all(_IDENT_RE.match(k) for k in values):
            self.open(kind)
            for k, v in sorted(values.items()):
                self.attr(k, v)
            self.close()
        else:
            self.attr(kind, dict(values))


def _hcl_resources(w: _Writer, r: Resources) -> None:
    w.open("resources")
    w.attr("cpu", r.cpu)
    w.attr("memory", r.memory_mb)
    w.close()


def _hcl_task_body(w: _Writer, t: TaskSpec) -> None:
    w.attr("driver", t.driver)
    if t.user:
        w.attr("user", t.user)
    w.open("config")
    for k, v in sorted(t.config.items()):  # sorted: the same job whatever the input order
        w.attr(_hcl_key(str(k)), v)
    w.close()
    if t.env:
        w.map_block("env", t.env)
    _hcl_resources(w, t.resources)
    for tpl in t.templates:
        w.open("template")
        w.text_attr("data", tpl.data)
        w.attr("destination", tpl.destination)
        w.attr("change_mode", tpl.change_mode)
        if tpl.change_signal:
            w.attr("change_signal", tpl.change_signal)
        if tpl.env:
            w.attr("env", True)
        if tpl.perms:
            w.attr("perms", tpl.perms)
        if tpl.left_delimiter:
            w.attr("left_delimiter", tpl.left_delimiter)
        if tpl.right_delimiter:
            w.attr("right_delimiter", tpl.right_delimiter)
        w.close()


def _hcl_connect(w: _Writer, s: ServiceSpec) -> None:
    w.open("connect")
    if s.native:
        w.attr("native", True)
    elif s.sidecar is not None:
        w.open("sidecar_service")
        w.open("proxy")
        if s.sidecar.config:
            w.map_block("config", s.sidecar.config)
        for u in s.sidecar.upstreams:
            w.open("upstreams")
            w.attr("destination_name", u.destination_name)
            if u.destination_type:
                w.attr("destination_type", u.destination_type)
            w.attr("local_bind_port", u.local_bind_port)
            if u.local_bind_address:
                w.attr("local_bind_address", u.local_bind_address)
            if u.datacenter:
                w.attr("datacenter", u.datacenter)
            if u.config:
                w.map_block("config", u.config)
            w.close()
        w.close()
        w.close()
        if s.sidecar.task is not None:
            w.open("sidecar_task")
            _hcl_task_body(w, s.sidecar.task)
            w.close()
    w.close()


def _hcl_check(w: _Writer, c: CheckSpec) -> None:
    w.open("check")
    w.attr("name", c.name)
    w.attr("type", c.kind)
    w.attr("port", c.port_label)
    w.attr("interval", format_duration(c.interval))
    w.attr("timeout", format_duration(c.timeout))
    w.close()


def _hcl_port(w: _Writer, p: PortSpec) -> None:
    w.open("port", p.label)
    if p.static is not None:
        w.attr("static", p.static)
    if p.to is not None:
        w.attr("to", p.to)
    w.close()


def _hcl_task(w: _Writer, t: TaskSpec) -> None:
    w.open("task", t.name)
    _hcl_task_body(w, t)
    w.close()


def _hcl_service(w: _Writer, s: ServiceSpec) -> None:
    w.open("service")
    w.attr("name", s.name)
    w.attr("port", s.port)
    if s.task:
        w.attr("task", s.task)
    if s.tags:
        w.attr("tags", list(s.tags))
    if s.meta:
        w.map_block("meta", s.meta)
    _hcl_connect(w, s)
    for c in s.checks:
        _hcl_check(w, c)
    w.close()


def hcl_fragment(kind: str, item: Any, depth: int, syntax: str = HCL2) -> str:
    """One block (`connect`, `check`, `port`, `task`) or an attribute (`attr:<name>`),
    indented for `depth`, for splicing into an operator's own job file."""
    w = _Writer(syntax, depth)
    if kind == "connect":
        _hcl_connect(w, item)
    elif kind == "check":
        _hcl_check(w, item)
    elif kind == "port":
        _hcl_port(w, item)
    elif kind == "task":
        _hcl_task(w, item)
    elif kind.startswith("attr:"):
        w.attr(kind[len("attr:") :], item)
    else:
        raise ValueError(f"no HCL fragment kind {kind!r}")
    return "\n".join(w.lines) + "\n"


def _hcl_group(w: _Writer, g: GroupSpec, job: JobSpec) -> None:
    w.open("group", g.name)
    w.attr("count", g.count)
    w.blank()
    w.open("network")
    w.attr("mode", g.network_mode)
    for p in g.ports:
        _hcl_port(w, p)
    w.close()
    if job.update is not None:
        u = job.update
        w.blank()
        w.open("update")
        w.attr("max_parallel", u.max_parallel)
        w.attr("health_check", u.health_check)
        w.attr("min_healthy_time", format_duration(u.min_healthy_time))
        w.attr("healthy_deadline", format_duration(u.healthy_deadline))
        w.attr("progress_deadline", format_duration(u.progress_deadline))
        w.attr("auto_revert", u.auto_revert)
        w.attr("canary", u.canary)
        w.close()
    if job.restart is not None:
        r = job.restart
        w.blank()
        w.open("restart")
        w.attr("attempts", r.attempts)
        w.attr("interval", format_duration(r.interval))
        w.attr("delay", format_duration(r.delay))
        w.attr("mode", r.mode)
        w.close()
    for s in g.services:
        w.blank()
        _hcl_service(w, s)
    for t in g.tasks:
        w.blank()
        _hcl_task(w, t)
    w.close()


def to_hcl(job: JobSpec, syntax: str = HCL2) -> str:
    """Job text for `nomad job run` in `syntax` (see `hcl_syntax`); deterministic."""
    w = _Writer(syntax)
    w.lines.append("# Rendered by meshkit.connect from the mesh model; edit the model, not this.")
    w.open("job", job.job_id)
    w.attr("datacenters", list(job.datacenters))
    w.attr("type", job.job_type)
    w.attr("priority", job.priority)
    if job.namespace:
        w.attr("namespace", job.namespace)
    if job.region:
        w.attr("region", job.region)
    for g in job.groups:
        w.blank()
        _hcl_group(w, g, job)
    w.close()
    return "\n".join(w.lines) + "\n"


# --- pieces for an operator's own job (bring your own job) -----------------------------------


def api_connect(s: ServiceSpec) -> dict[str, Any]:
    """The service's `Connect` object as the API form writes it."""
    return dict(_api_service(s).get("Connect") or {})


def api_check(c: CheckSpec) -> dict[str, Any]:
    return _api_check(c)


def api_task(t: TaskSpec) -> dict[str, Any]:
    return _api_task(t)
