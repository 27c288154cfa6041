# SPDX-License-Identifier: MPL-2.0
"""Job settings: everything a Nomad job needs that the mesh model does not say.

Parsed once at the boundary (module options, `meshkit nomad` settings file, a service's
`nomad:` mapping) into frozen dataclasses; every problem is collected so one run reports them
all, each naming the field and the fix. Fields are read by ``model_fields.Reader``, so the same
value means the same here as in the mesh model (``"yes"`` is a boolean in both) and is refused
in the same words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import (
    ModelError,
    Problem,
    Reader,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_versions import (
    DEFAULT_VERSION,
    NomadVersion,
    parse_nomad_version,
)

PATTERNS = ("native", "sidecar", "envoy")
JOB_TYPES = ("service", "system", "batch")
NETWORK_MODES = ("host", "bridge")
PROXY_DRIVERS = ("exec", "raw_exec")
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


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


def _resources(r: Reader, value: object, path: str, default: Resources) -> Resources:
    data = r.mapping(value, path) or {}
    r.known_keys(data, {"cpu", "memory"}, path)
    return Resources(
        cpu=r.integer(data, "cpu", path, low=1, high=1_000_000, default=default.cpu),
        memory_mb=r.integer(
            data, "memory", path, low=1, high=10_000_000, default=default.memory_mb
        ),
    )


def _template(r: Reader, value: object, path: str) -> Template | None:
    data = r.mapping(value, path) or {}
    r.known_keys(data, _TEMPLATE_KEYS, path)
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


def _task(r: Reader, value: object, path: str) -> TaskSettings:
    data = r.mapping(value, path) or {}
    r.known_keys(data, _TASK_KEYS, path)
    templates = tuple(
        t for t in (_template(r, v, where) for where, v in r.items(data, "templates", path)) if t
    )
    return TaskSettings(
        driver=r.string(data, "driver", path, "exec") or "exec",
        config=r.config(data, "config", path),
        env=r.str_map(data, "env", path),
        user=r.string(data, "user", path),
        resources=_resources(r, data.get("resources"), f"{path}.resources", Resources()),
        templates=templates,
    )


def _update(r: Reader, value: object, path: str) -> UpdatePolicy:
    data = r.mapping(value, path) or {}
    r.known_keys(data, _UPDATE_KEYS, path)
    d = UpdatePolicy()
    return UpdatePolicy(
        max_parallel=r.integer(
            data, "max_parallel", path, low=0, high=10_000, default=d.max_parallel
        ),
        health_check=r.choice(
            data, "health_check", path, ("checks", "task_states", "manual"), d.health_check
        ),
        min_healthy_time=r.duration(data, "min_healthy_time", path, d.min_healthy_time),
        healthy_deadline=r.duration(data, "healthy_deadline", path, d.healthy_deadline),
        progress_deadline=r.duration(data, "progress_deadline", path, d.progress_deadline),
        auto_revert=r.boolean(data, "auto_revert", path, d.auto_revert),
        canary=r.integer(data, "canary", path, low=0, high=10_000, default=d.canary),
    )


def _restart(r: Reader, value: object, path: str) -> RestartPolicy:
    data = r.mapping(value, path) or {}
    r.known_keys(data, _RESTART_KEYS, path)
    d = RestartPolicy()
    return RestartPolicy(
        attempts=r.integer(data, "attempts", path, low=0, high=10_000, default=d.attempts),
        interval=r.duration(data, "interval", path, d.interval),
        delay=r.duration(data, "delay", path, d.delay),
        mode=r.choice(data, "mode", path, ("fail", "delay"), d.mode),
    )


def _proxy(r: Reader, value: object, path: str) -> ProxySettings:
    data = r.mapping(value, path) or {}
    r.known_keys(data, _PROXY_KEYS, path)
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
    r = Reader(numbers_as_text=False)
    top = r.mapping(data, "job") or {}
    r.known_keys(top, _JOB_KEYS, "job")
    job_id = r.string(top, "name", "job")
    if not job_id or not _JOB_ID_RE.match(job_id):
        r.add("job.name", f"{job_id!r} is not a job name", "use letters, digits, . _ - only")
    version = DEFAULT_VERSION
    version_text = nomad_version if nomad_version is not None else top.get("nomad_version")
    if version_text not in (None, "", "auto"):
        try:
            version = parse_nomad_version(version_text)
        except ValueError as exc:
            r.add("job.nomad_version", str(exc), "write the cluster's version, e.g. 1.7.7")
    groups = r.mapping(top.get("groups"), "job.groups") or {}
    for name, group in groups.items():
        group_data = r.mapping(group, f"job.groups.{name}") or {}
        r.known_keys(group_data, _GROUP_KEYS, f"job.groups.{name}")
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
        datacenters=r.strings(top, "datacenters", "job", non_empty=True),
        namespace=r.string(top, "namespace", "job"),
        region=r.string(top, "region", "job"),
        job_type=r.choice(top, "type", "job", JOB_TYPES, "service"),
        priority=r.integer(top, "priority", "job", low=1, high=100, default=50),
        nomad_version=version,
        services=r.strings(top, "services", "job", non_empty=True),
        update=update,
        restart=restart,
        proxy=_proxy(r, top.get("proxy"), "job.proxy"),
        groups={str(k): dict(v) for k, v in groups.items() if isinstance(v, Mapping)},
    )
    if r.problems:
        raise ModelError(r.problems, source, subject="")
    return settings


def parse_group_settings(
    service_nomad: Mapping[str, Any], override: Mapping[str, Any], path: str
) -> tuple[GroupSettings, list[Problem]]:
    """One group's settings: the service's `nomad:` mapping, then `job.groups.<name>` on top."""
    r = Reader(numbers_as_text=False)
    data = {**dict(service_nomad), **dict(override)}
    r.known_keys(data, _GROUP_KEYS, path)
    mode = r.choice(data, "network_mode", path, NETWORK_MODES, "")
    settings = GroupSettings(
        pattern=r.choice(data, "pattern", path, PATTERNS, "native"),
        count=r.integer(data, "count", path, low=0, high=100_000, default=1),
        network_mode=mode,
        mesh_port=r.integer(data, "mesh_port", path, low=1, high=65535, default=21000),
        static_port=r.port(data, "static_port", path),
        task=_task(r, data.get("task"), f"{path}.task"),
    )
    return settings, r.problems
