# SPDX-License-Identifier: MPL-2.0
"""From the mesh model and the job settings to one typed Nomad job (before any syntax).

All decisions live here: which pattern puts what where, which fields a Nomad version can
carry, what the meshkit-proxy task is told. `nomad_render` then writes this tree as HCL2 or as
API JSON without deciding anything, so the two forms cannot drift apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import (
    Mesh,
    Service,
    Upstream,
)
from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import (
    ModelError,
    Problem,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_settings import (
    GroupSettings,
    JobSettings,
    ProxySettings,
    Resources,
    RestartPolicy,
    Template,
    UpdatePolicy,
    parse_group_settings,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_versions import (
    FEATURES,
    refusal,
)

PROXY_TASK = "meshkit-proxy"
MESH_PORT_LABEL = "mesh"


@dataclass(frozen=True)
class PortSpec:
    label: str
    to: int | None = None
    static: int | None = None  # a reserved host port (ReservedPorts) instead of a dynamic one


@dataclass(frozen=True)
class UpstreamSpec:
    destination_name: str
    local_bind_port: int
    destination_type: str = ""  # "" = not sent (Nomad's default: service)
    datacenter: str = ""
    local_bind_address: str = ""  # "" = not sent (127.0.0.1)
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    driver: str
    config: Mapping[str, Any]
    env: Mapping[str, str] = field(default_factory=dict)
    user: str = ""
    resources: Resources = field(default_factory=Resources)
    templates: tuple[Template, ...] = ()


@dataclass(frozen=True)
class SidecarSpec:
    """`connect.sidecar_service` (+ `sidecar_task` when meshkit-proxy replaces Envoy)."""

    upstreams: tuple[UpstreamSpec, ...]
    config: Mapping[str, Any] = field(default_factory=dict)
    task: TaskSpec | None = None


@dataclass(frozen=True)
class CheckSpec:
    name: str
    kind: str  # tcp
    port_label: str
    interval: int
    timeout: int


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    port: str  # label or literal port number
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=dict)
    task: str = ""  # native: the task that speaks mTLS
    native: bool = False
    sidecar: SidecarSpec | None = None
    checks: tuple[CheckSpec, ...] = ()


@dataclass(frozen=True)
class GroupSpec:
    name: str
    count: int
    network_mode: str
    ports: tuple[PortSpec, ...]
    services: tuple[ServiceSpec, ...]
    tasks: tuple[TaskSpec, ...]
    pattern: str


@dataclass(frozen=True)
class JobSpec:
    job_id: str
    job_type: str
    datacenters: tuple[str, ...]
    priority: int
    namespace: str
    region: str
    groups: tuple[GroupSpec, ...]
    update: UpdatePolicy | None
    restart: RestartPolicy | None


PROXY_CONFIG_FILE = "local/meshkit-proxy.yaml"  # relative to the task dir: NOMAD_TASK_DIR
# What meshkit-proxy's Consul-mode file can carry from the model's `config` mappings.
NATIVE_PROXY_CONFIG_KEYS = ("handshake_timeout_ms", "local_connect_timeout_ms")
NATIVE_UPSTREAM_CONFIG_KEYS = ("connect_timeout_ms",)
_MS_RE = re.compile(r"^[0-9]+(\.[0-9]+)?$")


def _yaml_scalar(value: Any) -> str:
    """A YAML scalar that means exactly `value` (JSON scalars are YAML)."""
    return json.dumps(value)


def _config_entries(
    config: Mapping[str, Any], allowed: tuple[str, ...], where: str, problems: list[Problem]
) -> list[tuple[str, Any]]:
    for key in sorted(config):
        if key not in allowed:
            problems.append(
                Problem(
                    f"{where}.{key}",
                    "the native pattern writes this config into meshkit-proxy's file, which "
                    f"knows only {', '.join(allowed)}",
                    "drop the key, or use nomad.pattern: sidecar (Consul keeps Proxy.Config)",
                )
            )
    out: list[tuple[str, Any]] = []
    for key in (k for k in allowed if k in config):
        value = config[key]
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not numeric and not (isinstance(value, str) and _MS_RE.match(value)):
            problems.append(
                Problem(
                    f"{where}.{key}",
                    f"{value!r} is not a number of milliseconds",
                    "write a number, e.g. 5000",
                )
            )
            continue
        out.append((key, value))
    return out


def native_proxy_file(
    service: Service, group: GroupSettings, path: str
) -> tuple[str, list[Problem]]:
    """meshkit-proxy's Consul-mode config file (`mode: consul`) for a native service.

    A Nomad `template` block writes it, so the listener address comes from consul-template's
    `{{ env "NOMAD_IP_mesh" }}` when the task starts; everything else is data from the model,
    including what flags cannot carry (upstream datacenter and config, sidecar.config).
    """
    problems: list[Problem] = []
    sidecar = service.sidecar
    if group.effective_network_mode == "bridge":
        bind_address, bind_port = _yaml_scalar("0.0.0.0"), str(group.mesh_port)
    else:
        bind_address = f'"{{{{ env "NOMAD_IP_{MESH_PORT_LABEL}" }}}}"'
        bind_port = f'{{{{ env "NOMAD_PORT_{MESH_PORT_LABEL}" }}}}'
    local_address = (sidecar.local_service_address if sidecar else "") or "127.0.0.1"
    local_port = (sidecar.local_service_port if sidecar else 0) or service.port or 0
    lines = [
        "# Written by Nomad from the meshkit mesh model; meshkit-proxy -config reads it.",
        "mode: consul",
        f"service: {_yaml_scalar(service.name)}",
        "public_listener:",
        f"  bind_address: {bind_address}",
        f"  bind_port: {bind_port}",
        f"  local_service_address: {_yaml_scalar(f'{local_address}:{local_port}')}",
    ]
    proxy_config = sidecar.config if sidecar else {}
    for key, value in _config_entries(
        proxy_config, NATIVE_PROXY_CONFIG_KEYS, f"{path}.sidecar.config", problems
    ):
        lines.append(f"  {key}: {_yaml_scalar(value)}")
    ups = sidecar.upstreams if sidecar else ()
    lines.append("upstreams:" if ups else "upstreams: []")
    for i, up in enumerate(ups):
        upath = f"{path}.sidecar.upstreams[{i}] ({up.destination_name})"
        lines.append(f"  - destination_name: {_yaml_scalar(up.destination_name)}")
        lines.append(f"    destination_type: {_yaml_scalar(up.destination_type or 'service')}")
        if up.datacenter:
            lines.append(f"    datacenter: {_yaml_scalar(up.datacenter)}")
        lines.append(
            f"    local_bind_address: {_yaml_scalar(up.local_bind_address or '127.0.0.1')}"
        )
        lines.append(f"    local_bind_port: {up.local_bind_port}")
        for key, value in _config_entries(
            up.config, NATIVE_UPSTREAM_CONFIG_KEYS, f"{upath}.config", problems
        ):
            lines.append(f"    {key}: {_yaml_scalar(value)}")
    if sidecar and sidecar.admin_port:
        lines += ["admin:", f"  bind: {_yaml_scalar(f'127.0.0.1:{sidecar.admin_port}')}"]
    return "\n".join(lines) + "\n", problems


def _upstreams(
    service: Service, problems: list[Problem], path: str, settings: JobSettings
) -> tuple[UpstreamSpec, ...]:
    out: list[UpstreamSpec] = []
    for i, up in enumerate(service.sidecar.upstreams if service.sidecar else ()):
        upath = f"{path}.sidecar.upstreams[{i}] ({up.destination_name})"
        uses = {
            "prepared_query_upstream": up.destination_type == "prepared_query",
            "upstream_datacenter": bool(up.datacenter),
            "upstream_local_bind_address": _bind_address(up) != "",
            "upstream_config": bool(up.config),
        }
        for key in (k for k, used in uses.items() if used):
            _gate(problems, key, settings, upath)
        out.append(
            UpstreamSpec(
                destination_name=up.destination_name,
                local_bind_port=up.local_bind_port,
                destination_type="prepared_query"
                if up.destination_type == "prepared_query"
                else "",
                datacenter=up.datacenter,
                local_bind_address=_bind_address(up),
                config=dict(up.config),
            )
        )
    return tuple(out)


def _bind_address(up: Upstream) -> str:
    address = up.local_bind_address or ""
    return "" if address in ("", "127.0.0.1") else address


def _gate(problems: list[Problem], key: str, settings: JobSettings, path: str) -> None:
    text = refusal(key, settings.nomad_version)
    if text:
        problems.append(Problem(path, text, FEATURES[key].fix))


def _consul_addr(proxy: ProxySettings, pattern: str, mode: str) -> str:
    """Where the proxy reaches the Consul agent from inside its allocation: the host's address,
    since 127.0.0.1 inside a bridge-mode allocation is the allocation itself."""
    if proxy.consul_http_addr:
        return proxy.consul_http_addr
    if mode == "host":
        return "127.0.0.1:8500"
    if pattern == "native":
        # Nomad exposes the agent's HTTP API on a socket only to groups with a native service.
        return "unix://${NOMAD_ALLOC_DIR}/tmp/consul_http.sock"
    return "${attr.unique.network.ip-address}:8500"


def _app_task(service: Service, group: GroupSettings) -> TaskSpec:
    task = group.task
    return TaskSpec(
        name=service.name,
        driver=task.driver,
        config=dict(task.config),
        env=dict(task.env),
        user=task.user,
        resources=task.resources,
        templates=task.templates,
    )


def _group(
    service: Service,
    group: GroupSettings,
    settings: JobSettings,
    problems: list[Problem],
    port_label: str | None = None,
) -> GroupSpec:
    """One group for `service`; `port_label` is the service `port` an operator's own job
    already writes (bring your own job), which Nomad puts into the sidecar's ID."""
    path = f"services.{service.name}"
    mode = group.effective_network_mode
    pattern = group.pattern
    _gate(problems, "connect", settings, path)
    if service.native:
        return _native_app_group(service, group, settings, problems)
    proxy = settings.proxy
    app_port = (service.sidecar.local_service_port if service.sidecar else 0) or service.port
    if app_port is None:
        problems.append(
            Problem(f"{path}.port", "a Nomad mesh service needs the app's port", "set port")
        )
        app_port = 0
    if not group.task.config:
        problems.append(
            Problem(
                f"{path}.nomad.task.config",
                "the app task has no driver config, so Nomad has nothing to start",
                "set nomad.task.config (e.g. command and args for exec/raw_exec, image for docker)",
            )
        )
    tasks: list[TaskSpec] = [_app_task(service, group)]
    tags, meta = tuple(service.tags), dict(service.meta)
    if mode == "bridge" and proxy.driver == "exec" and pattern != "envoy":
        _gate(problems, "bridge_loopback_exec", settings, "job.proxy.driver")
    if pattern == "native":
        _gate(problems, "native", settings, f"{path}.nomad.pattern")
        if mode == "bridge":
            _gate(problems, "native_bridge", settings, f"{path}.nomad.network_mode")
        file_text, file_problems = native_proxy_file(service, group, path)
        problems += file_problems
        tasks.append(
            TaskSpec(
                name=PROXY_TASK,
                driver=proxy.driver,
                config={
                    "command": proxy.command,
                    "args": ["-config", "${NOMAD_TASK_DIR}/meshkit-proxy.yaml"],
                },
                env={"CONSUL_HTTP_ADDR": _consul_addr(proxy, pattern, mode)},
                resources=proxy.resources,
                templates=(Template(data=file_text, destination=PROXY_CONFIG_FILE),),
            )
        )
        ports = (
            PortSpec(
                MESH_PORT_LABEL,
                to=group.mesh_port if mode == "bridge" else None,
                static=group.static_port,
            ),
        )
        svc = ServiceSpec(
            name=service.name,
            port=MESH_PORT_LABEL,
            tags=tags,
            meta=meta,
            task=PROXY_TASK,
            native=True,
            checks=(
                CheckSpec(
                    f"{service.name} mesh listener", "tcp", MESH_PORT_LABEL, 10**10, 2 * 10**9
                ),
            ),
        )
        return GroupSpec(service.name, group.count, mode, ports, (svc,), tuple(tasks), pattern)

    if mode != "bridge":
        problems.append(
            Problem(
                f"{path}.nomad.network_mode",
                f"pattern {pattern} needs bridge networking (Nomad rejects a sidecar_service "
                "in host mode)",
                "set nomad.network_mode: bridge, or use nomad.pattern: native",
            )
        )
    upstreams = _upstreams(service, problems, path, settings)
    sidecar_task = None
    if pattern == "sidecar":
        proxy_id = (
            "_nomad-task-${NOMAD_ALLOC_ID}-group-${NOMAD_GROUP_NAME}-"
            f"{service.name}-{port_label or app_port}-sidecar-proxy"
        )
        args = ["-proxy-id", proxy_id]
        if proxy.consul_acls:
            args += ["-token-file", "${NOMAD_SECRETS_DIR}/si_token"]
        sidecar_task = TaskSpec(
            name="",
            driver=proxy.driver,
            config={"command": proxy.command, "args": args},
            env={"CONSUL_HTTP_ADDR": _consul_addr(proxy, pattern, mode)},
            resources=proxy.resources,
        )
    sidecar_config = dict(service.sidecar.config) if service.sidecar else {}
    svc = ServiceSpec(
        name=service.name,
        port=port_label or str(app_port),
        tags=tags,
        meta=meta,
        sidecar=SidecarSpec(
            upstreams=upstreams,
            config=sidecar_config,
            task=sidecar_task,
        ),
    )
    return GroupSpec(service.name, group.count, "bridge", (), (svc,), tuple(tasks), pattern)


def mesh_group(
    service: Service, group: GroupSettings, settings: JobSettings, port_label: str | None
) -> tuple[GroupSpec, list[Problem]]:
    """The meshkit parts for one service of an operator's own job, through the same
    decisions, gates and validations as a model-rendered group."""
    problems: list[Problem] = []
    return _group(service, group, settings, problems, port_label), problems


def _native_app_group(
    service: Service, group: GroupSettings, settings: JobSettings, problems: list[Problem]
) -> GroupSpec:
    """A Connect-native app (model ``connect: {native: true}``, meshkit.native inside).

    No proxy task: the app task itself is the native service (``connect { native = true }``,
    ``task = <app>``), serving mTLS on the ``mesh`` port (``NOMAD_PORT_mesh``, dynamic unless
    ``nomad.static_port`` fixes it). It reaches the agent as a native task does
    (CONSUL_HTTP_ADDR below; Nomad adds CONSUL_HTTP_TOKEN when Consul ACLs are on).
    """
    path = f"services.{service.name}"
    mode = group.effective_network_mode
    if group.pattern != "native":
        problems.append(
            Problem(
                f"{path}.nomad.pattern",
                f"service {service.name!r} is Connect-native (connect.native: true): pattern "
                f"{group.pattern} puts a proxy in front of it",
                "use nomad.pattern: native (the default), or drop connect.native",
            )
        )
    _gate(problems, "native", settings, f"{path}.nomad.pattern")
    if mode == "bridge":
        _gate(problems, "native_bridge", settings, f"{path}.nomad.network_mode")
    if not group.task.config:
        problems.append(
            Problem(
                f"{path}.nomad.task.config",
                "the app task has no driver config, so Nomad has nothing to start",
                "set nomad.task.config (e.g. command and args for exec/raw_exec, image for docker)",
            )
        )
    app = _app_task(service, group)
    env = {"CONSUL_HTTP_ADDR": _consul_addr(settings.proxy, "native", mode), **app.env}
    app = TaskSpec(
        name=app.name,
        driver=app.driver,
        config=app.config,
        env=env,
        user=app.user,
        resources=app.resources,
        templates=app.templates,
    )
    ports = (
        PortSpec(
            MESH_PORT_LABEL,
            to=group.mesh_port if mode == "bridge" else None,
            static=group.static_port,
        ),
    )
    svc = ServiceSpec(
        name=service.name,
        port=MESH_PORT_LABEL,
        tags=tuple(service.tags),
        meta=dict(service.meta),
        task=service.name,
        native=True,
        checks=(
            CheckSpec(f"{service.name} mesh listener", "tcp", MESH_PORT_LABEL, 10**10, 2 * 10**9),
        ),
    )
    return GroupSpec(service.name, group.count, mode, ports, (svc,), (app,), "native")


def build_job(mesh: Mesh, settings: JobSettings) -> JobSpec:
    """The job for `settings.services` (default: every service); ModelError if not."""
    problems: list[Problem] = []
    by_name = {s.name: s for s in mesh.services}
    wanted = settings.services or tuple(by_name)
    groups: list[GroupSpec] = []
    for name in wanted:
        service = by_name.get(name)
        if service is None:
            problems.append(
                Problem(
                    "job.services",
                    f"service {name!r} is not in the mesh model",
                    f"use one of: {', '.join(sorted(by_name)) or '(none)'}",
                )
            )
            continue
        group, group_problems = parse_group_settings(
            service.nomad, settings.groups.get(name, {}), f"services.{name}.nomad"
        )
        problems += group_problems
        if service.sidecar is None and not service.native:
            problems.append(
                Problem(
                    f"services.{name}.sidecar",
                    "the service is outside the mesh (no sidecar), so no Nomad mesh group",
                    "add a sidecar mapping or leave the service out of job.services",
                )
            )
            continue
        groups.append(_group(service, group, settings, problems))
    if not groups and not problems:
        problems.append(Problem("job.services", "no service to run", "list services"))
    for name in settings.groups:
        if name not in wanted:
            problems.append(
                Problem(f"job.groups.{name}", "no such service in this job", "fix the name")
            )
    if problems:
        raise ModelError(problems, f"job {settings.job_id}", subject="")
    return JobSpec(
        job_id=settings.job_id,
        job_type=settings.job_type,
        datacenters=settings.datacenters or (mesh.datacenter,),
        priority=settings.priority,
        namespace=settings.namespace,
        region=settings.region,
        groups=tuple(groups),
        update=settings.update if settings.job_type == "service" else None,
        restart=settings.restart,
    )
