# SPDX-License-Identifier: MPL-2.0
"""Job settings: everything a Nomad job needs that the mesh model does not say.

Parsed once at the boundary (module options, `meshkit nomad` settings file, a service's
`nomad:` mapping) into frozen dataclasses; every problem is collected so one run reports them
all, each naming the field and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import Problem
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_versions import (
    DEFAULT_VERSION,
    NomadVersion,
    parse_version,
)

PATTERNS = ("native", "sidecar", "envoy")
JOB_TYPES = ("service", "system", "batch")
NETWORK_MODES = ("host", "bridge")
PROXY_DRIVERS = ("exec", "raw_exec")
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9}
_UNIT_NS["h"] = 3600 * 10**9


class NomadSettingsError(ValueError):
    """Every problem in the job settings; nothing is rendered or submitted."""

    def __init__(self, problems: Sequence[Problem], source: str = "job settings") -> None:
        self.problems = list(problems)
        lines = [f"{source}: {len(self.problems)} problem(s):"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


def parse_duration(value: object) -> int:
    """Go duration text (`10s`, `1m30s`) or integer nanoseconds, as nanoseconds."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value!r} is negative")
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} is not a duration such as 10s or 1m30s")
    text = value.strip()
    if text == "0":
        return 0
    pos, total = 0, 0.0
    for match in _DURATION_RE.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_NS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"{value!r} is not a duration such as 10s or 1m30s")
    return int(total)


def format_duration(ns: int) -> str:
    """Nanoseconds as the shortest Go duration text HCL accepts (`90s` -> `1m30s`)."""
    if ns == 0:
        return "0s"
    parts: list[str] = []
    for unit, size in (("h", _UNIT_NS["h"]), ("m", _UNIT_NS["m"]), ("s", _UNIT_NS["s"])):
        if ns >= size:
            parts.append(f"{ns // size}{unit}")
            ns %= size
    for unit, size in (("ms", _UNIT_NS["ms"]), ("us", _UNIT_NS["us"]), ("ns", 1)):
        if ns >= size:
            parts.append(f"{ns // size}{unit}")
            ns %= size
    return "".join(parts)


@dataclass(frozen=True)
class Resources:
    cpu: int = 100
    memory_mb: int = 128


@dataclass(frozen=True)
class Template:
    """A Nomad `template` block, carried verbatim: its `{{ }}` belong to consul-template."""

    data: str
    destination: str
    change_mode: str = "restart"
    change_signal: str = ""
    env: bool = False
    perms: str = ""
    left_delimiter: str = ""
    right_delimiter: str = ""


@dataclass(frozen=True)
class TaskSettings:
    """The application task of a group."""

    driver: str = "exec"
    config: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    user: str = ""
    resources: Resources = Resources()
    templates: tuple[Template, ...] = ()


@dataclass(frozen=True)
class UpdatePolicy:
    max_parallel: int = 1
    health_check: str = "checks"
    min_healthy_time: int = 10 * 10**9
    healthy_deadline: int = 300 * 10**9
    progress_deadline: int = 600 * 10**9
    auto_revert: bool = False
    canary: int = 0


@dataclass(frozen=True)
class RestartPolicy:
    attempts: int = 2
    interval: int = 1800 * 10**9
    delay: int = 15 * 10**9
    mode: str = "fail"


@dataclass(frozen=True)
class ProxySettings:
    """How meshkit-proxy runs inside a group (native task or sidecar_task)."""

    driver: str = "raw_exec"
    command: str = "/usr/local/bin/meshkit-proxy"
    resources: Resources = Resources(cpu=100, memory_mb=64)
    consul_http_addr: str = ""  # "" = chosen per pattern and network mode
    # Consul ACLs on: the sidecar reads the service-identity token Nomad writes to
    # secrets/si_token (native tasks get CONSUL_HTTP_TOKEN from Nomad instead).
    consul_acls: bool = False


@dataclass(frozen=True)
class GroupSettings:
    """Per-service Nomad settings: the service's `nomad:` mapping, overridden by `groups.<name>`."""

    pattern: str = "native"
    count: int = 1
    network_mode: str = ""  # "" = host for native, bridge otherwise
    mesh_port: int = 21000  # the native proxy's listener inside a bridge netns
    static_port: int | None = None  # native: a fixed host port for `mesh` instead of a dynamic one
    task: TaskSettings = TaskSettings()

    @property
    def effective_network_mode(self) -> str:
        return self.network_mode or ("host" if self.pattern == "native" else "bridge")


@dataclass(frozen=True)
class JobSettings:
    job_id: str
    datacenters: tuple[str, ...] = ()  # () = the mesh's datacenter
    namespace: str = ""
    region: str = ""
    job_type: str = "service"
    priority: int = 50
    nomad_version: NomadVersion = DEFAULT_VERSION
    services: tuple[str, ...] = ()  # () = every service of the mesh
    update: UpdatePolicy | None = UpdatePolicy()
    restart: RestartPolicy | None = None
    proxy: ProxySettings = ProxySettings()
    groups: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


_JOB_KEYS = {
    "name",
    "datacenters",
    "namespace",
    "region",
    "type",
    "priority",
    "nomad_version",
    "services",
    "update",
    "restart",
    "proxy",
    "groups",
}
_GROUP_KEYS = {"pattern", "count", "network_mode", "mesh_port", "static_port", "task"}
_TASK_KEYS = {"driver", "config", "env", "user", "resources", "templates"}
_TEMPLATE_KEYS = {
    "data",
    "destination",
    "change_mode",
    "change_signal",
    "env",
    "perms",
    "left_delimiter",
    "right_delimiter",
}
_UPDATE_KEYS = {
    "max_parallel",
    "health_check",
    "min_healthy_time",
    "healthy_deadline",
    "progress_deadline",
    "auto_revert",
    "canary",
}
_RESTART_KEYS = {"attempts", "interval", "delay", "mode"}
_PROXY_KEYS = {"driver", "command", "resources", "consul_http_addr", "consul_acls"}


class _Reader:
    """Typed getters that record a Problem instead of raising, so every mistake is reported."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str, fix: str) -> None:
        self.problems.append(Problem(path, message, fix))

    def mapping(self, value: object, path: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.add(
                path, f"must be a mapping, got {type(value).__name__}", "write key: value pairs"
            )
            return {}
        return value

    def keys(self, data: Mapping[str, Any], allowed: set[str], path: str) -> None:
        for key in data:
            if key not in allowed:
                self.add(
                    f"{path}.{key}",
                    "unknown key",
                    f"use one of: {', '.join(sorted(allowed))}",
                )

    def string(self, data: Mapping[str, Any], key: str, path: str, default: str = "") -> str:
        value = data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, str):
            self.add(f"{path}.{key}", f"must be a string, got {value!r}", "quote the value")
            return default
        return value

    def choice(
        self, data: Mapping[str, Any], key: str, path: str, choices: Sequence[str], default: str
    ) -> str:
        value = self.string(data, key, path, default)
        if value and value not in choices:
            self.add(
                f"{path}.{key}", f"{value!r} is not allowed", f"use one of: {', '.join(choices)}"
            )
            return default
        return value

    def integer(
        self, data: Mapping[str, Any], key: str, path: str, default: int, low: int, high: int
    ) -> int:
        value = data.get(key, default)
        if value is None:
            return default
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.add(
                f"{path}.{key}", f"{value!r} is not an integer in {low}-{high}", "fix the number"
            )
            return default
        return value

    def boolean(self, data: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.add(f"{path}.{key}", f"{value!r} is not true or false", "write true or false")
            return default
        return value

    def duration(self, data: Mapping[str, Any], key: str, path: str, default: int) -> int:
        if data.get(key) is None:
            return default
        try:
            return parse_duration(data[key])
        except ValueError as exc:
            self.add(f"{path}.{key}", str(exc), "write a Go duration such as 10s, 5m or 1h")
            return default

    def strings(self, data: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        value = data.get(key)
        if value is None:
            return ()
        if isinstance(value, str) or not isinstance(value, Sequence):
            self.add(f"{path}.{key}", "must be a list of strings", "write a YAML list")
            return ()
        if not all(isinstance(v, str) and v for v in value):
            self.add(f"{path}.{key}", "must hold non-empty strings only", "quote every item")
            return ()
        return tuple(value)

    def str_map(self, data: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
        value = self.mapping(data.get(key), f"{path}.{key}")
        out: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(k, str) or isinstance(v, (Mapping, list)) or v is None:
                self.add(f"{path}.{key}.{k}", "must map a name to a scalar", "quote the value")
                continue
            out[k] = str(v).lower() if isinstance(v, bool) else str(v)
        return out


def _resources(r: _Reader, value: object, path: str, default: Resources) -> Resources:
    data = r.mapping(value, path)
    r.keys(data, {"cpu", "memory"}, path)
    return Resources(
        cpu=r.integer(data, "cpu", path, default.cpu, 1, 1_000_000),
        memory_mb=r.integer(data, "memory", path, default.memory_mb, 1, 10_000_000),
    )


def _template(r: _Reader, value: object, path: str) -> Template | None:
    data = r.mapping(value, path)
    r.keys(data, _TEMPLATE_KEYS, path)
    body = data.get("data")
    dest = r.string(data, "destination", path)
    if not isinstance(body, str) or not dest:
        r.add(path, "needs data (the template text) and destination", "set both keys")
        return None
    return Template(
        data=body,
        destination=dest,
        change_mode=r.choice(data, "change_mode", path, ("restart", "signal", "noop"), "restart"),
        change_signal=r.string(data, "change_signal", path),
        env=r.boolean(data, "env", path, False),
        perms=r.string(data, "perms", path),
        left_delimiter=r.string(data, "left_delimiter", path),
        right_delimiter=r.string(data, "right_delimiter", path),
    )


def _task(r: _Reader, value: object, path: str) -> TaskSettings:
    data = r.mapping(value, path)
    r.keys(data, _TASK_KEYS, path)
    templates_raw = data.get("templates") or []
    if not isinstance(templates_raw, list):
        r.add(f"{path}.templates", "must be a list", "write a YAML list of template mappings")
        templates_raw = []
    templates = tuple(
        t
        for t in (_template(r, v, f"{path}.templates[{i}]") for i, v in enumerate(templates_raw))
        if t
    )
    return TaskSettings(
        driver=r.string(data, "driver", path, "exec") or "exec",
        config=dict(r.mapping(data.get("config"), f"{path}.config")),
        env=r.str_map(data, "env", path),
        user=r.string(data, "user", path),
        resources=_resources(r, data.get("resources"), f"{path}.resources", Resources()),
        templates=templates,
    )


def _update(r: _Reader, value: object, path: str) -> UpdatePolicy:
    data = r.mapping(value, path)
    r.keys(data, _UPDATE_KEYS, path)
    d = UpdatePolicy()
    return UpdatePolicy(
        max_parallel=r.integer(data, "max_parallel", path, d.max_parallel, 0, 10_000),
        health_check=r.choice(
            data, "health_check", path, ("checks", "task_states", "manual"), d.health_check
        ),
        min_healthy_time=r.duration(data, "min_healthy_time", path, d.min_healthy_time),
        healthy_deadline=r.duration(data, "healthy_deadline", path, d.healthy_deadline),
        progress_deadline=r.duration(data, "progress_deadline", path, d.progress_deadline),
        auto_revert=r.boolean(data, "auto_revert", path, d.auto_revert),
        canary=r.integer(data, "canary", path, d.canary, 0, 10_000),
    )


def _restart(r: _Reader, value: object, path: str) -> RestartPolicy:
    data = r.mapping(value, path)
    r.keys(data, _RESTART_KEYS, path)
    d = RestartPolicy()
    return RestartPolicy(
        attempts=r.integer(data, "attempts", path, d.attempts, 0, 10_000),
        interval=r.duration(data, "interval", path, d.interval),
        delay=r.duration(data, "delay", path, d.delay),
        mode=r.choice(data, "mode", path, ("fail", "delay"), d.mode),
    )


def _proxy(r: _Reader, value: object, path: str) -> ProxySettings:
    data = r.mapping(value, path)
    r.keys(data, _PROXY_KEYS, path)
    d = ProxySettings()
    return ProxySettings(
        driver=r.choice(data, "driver", path, PROXY_DRIVERS, d.driver),
        command=r.string(data, "command", path, d.command) or d.command,
        resources=_resources(r, data.get("resources"), f"{path}.resources", d.resources),
        consul_http_addr=r.string(data, "consul_http_addr", path),
        consul_acls=r.boolean(data, "consul_acls", path, False),
    )


def version_request(option: object, setting: object) -> str:
    """The version to check against: an explicit option, else the settings' value, else auto.

    "auto" (or nothing) means: ask the agent (GET /v1/agent/self). It is never a version
    itself, wherever it is written, so the gates always run against a real version.
    """
    for value in (option, setting):
        if value not in (None, "", "auto"):
            return str(value)
    return "auto"


def parse_job_settings(
    data: Mapping[str, Any], *, source: str = "job settings", nomad_version: str | None = None
) -> JobSettings:
    """Validate the job settings; `nomad_version` (e.g. detected from the agent) wins if given."""
    r = _Reader()
    top = r.mapping(data, "job")
    r.keys(top, _JOB_KEYS, "job")
    job_id = r.string(top, "name", "job")
    if not job_id or not _JOB_ID_RE.match(job_id):
        r.add("job.name", f"{job_id!r} is not a job name", "use letters, digits, . _ - only")
    version = DEFAULT_VERSION
    version_text = nomad_version if nomad_version is not None else top.get("nomad_version")
    if version_text not in (None, "", "auto"):
        try:
            version = parse_version(version_text)
        except ValueError as exc:
            r.add("job.nomad_version", str(exc), "write the cluster's version, e.g. 1.7.7")
    groups = r.mapping(top.get("groups"), "job.groups")
    for name, group in groups.items():
        r.keys(r.mapping(group, f"job.groups.{name}"), _GROUP_KEYS, f"job.groups.{name}")
    update: UpdatePolicy | None = None
    if "update" not in top:
        update = UpdatePolicy()
    elif top["update"] is not None and top["update"] is not False:
        update = _update(r, top["update"], "job.update")
    elif top.get("type", "service") in (None, "service"):
        # Nomad canonicalizes a service job without an update block to its default one
        # (max_parallel 1) and runs a deployment anyway; saying "none" would be a lie.
        r.add(
            "job.update",
            "a service job without an update block still gets Nomad's default one "
            "(max_parallel 1, health_check checks), so Nomad runs a deployment anyway",
            "write update: {max_parallel: 0} to run without deployments, or drop update: "
            "to use meshkit's default block",
        )
    restart = _restart(r, top["restart"], "job.restart") if top.get("restart") else None
    settings = JobSettings(
        job_id=job_id,
        datacenters=r.strings(top, "datacenters", "job"),
        namespace=r.string(top, "namespace", "job"),
        region=r.string(top, "region", "job"),
        job_type=r.choice(top, "type", "job", JOB_TYPES, "service"),
        priority=r.integer(top, "priority", "job", 50, 1, 100),
        nomad_version=version,
        services=r.strings(top, "services", "job"),
        update=update,
        restart=restart,
        proxy=_proxy(r, top.get("proxy"), "job.proxy"),
        groups={str(k): dict(v) for k, v in groups.items() if isinstance(v, Mapping)},
    )
    if r.problems:
        raise NomadSettingsError(r.problems, source)
    return settings


def parse_group_settings(
    service_nomad: Mapping[str, Any], override: Mapping[str, Any], path: str
) -> tuple[GroupSettings, list[Problem]]:
    """One group's settings: the service's `nomad:` mapping, then `job.groups.<name>` on top."""
    r = _Reader()
    data = {**dict(service_nomad), **dict(override)}
    r.keys(data, _GROUP_KEYS, path)
    mode = r.choice(data, "network_mode", path, NETWORK_MODES, "")
    settings = GroupSettings(
        pattern=r.choice(data, "pattern", path, PATTERNS, "native"),
        count=r.integer(data, "count", path, 1, 0, 100_000),
        network_mode=mode,
        mesh_port=r.integer(data, "mesh_port", path, 21000, 1, 65535),
        static_port=(
            r.integer(data, "static_port", path, 0, 1, 65535)
            if data.get("static_port") is not None
            else None
        ),
        task=_task(r, data.get("task"), f"{path}.task"),
    )
    return settings, r.problems
