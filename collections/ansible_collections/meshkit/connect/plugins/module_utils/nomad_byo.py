# SPDX-License-Identifier: MPL-2.0
"""Bring your own job: an operator's Nomad job file, with meshkit filled in where it asks.

The operator marks a group's service with `meta` keys (they survive `nomad fmt`, `nomad job
validate`, `/v1/jobs/parse` and the JSON form, and read like any other service metadata):

    service {
      name = "count-api"          # the mesh model's service of that name
      port = "9001"
      meta {
        meshkit = "sidecar"       # native | sidecar | envoy
        meshkit_consul_acls = "true"   # optional: the sidecar reads Nomad's SI token
      }
    }

The model service of that name supplies the upstreams (service and prepared query), the
timeouts (`sidecar.config`, upstream `config`) and the app port; the job settings supply the
Nomad version and how meshkit-proxy runs. The filled-in parts come from `nomad_jobspec`'s
`mesh_group` (same decisions, version gates and validations as a model-rendered job) and are
written by `nomad_render`. Everything else in the file is left as the operator wrote it: HCL is
spliced as text (python-hcl2 finds the blocks and their lines), API JSON is merged as data.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import (
    Mesh,
    Service,
)
from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import (
    ModelError,
    Problem,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_jobspec import (
    MESH_PORT_LABEL,
    PROXY_TASK,
    GroupSpec,
    mesh_group,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_render import (
    api_check,
    api_connect,
    api_task,
    hcl_fragment,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_settings import (
    GroupSettings,
    JobSettings,
    TaskSettings,
    parse_job_settings,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_submit import (
    NomadSubmitError,
    call,
)

REF_KEY = "meshkit"
ACLS_KEY = "meshkit_consul_acls"
REF_KEYS = (REF_KEY, ACLS_KEY)
PATTERNS = ("native", "sidecar", "envoy")
# Job settings that still apply to an operator's own job; the rest is the job file's business.
BYO_SETTINGS_KEYS = ("nomad_version", "proxy", "name")

# Model-speak in the shared validations, said the way a job file says it.
_FIX_WORDS = (
    ("nomad.network_mode: bridge", 'network { mode = "bridge" } in the group'),
    ("nomad.network_mode: host", 'network { mode = "host" } in the group'),
    ("nomad.pattern: native", 'meta { meshkit = "native" }'),
    ("nomad.pattern: sidecar", 'meta { meshkit = "sidecar" }'),
)


@dataclass(frozen=True)
class Span:
    """Where to insert text: before the closing brace at `close`, at nesting `depth`."""

    close: int
    depth: int


@dataclass(frozen=True)
class ServiceRef:
    """One service of the operator's job that asks for meshkit, and what its group holds."""

    group: str
    name: str
    pattern: str
    consul_acls: bool | None
    port: str  # the service's `port` as written ("" if none)
    task: str  # the service's `task` as written
    has_connect: bool
    network_mode: str  # "" = no group network block (host)
    used_ports: tuple[tuple[int, str], ...]  # (port, what) already taken in the group
    port_labels: tuple[str, ...]
    task_names: tuple[str, ...]
    where: str  # "file:line" (HCL) or "file" (JSON)
    field: str  # how the job file names it
    service_span: Span | None = None
    network_span: Span | None = None
    group_span: Span | None = None


@dataclass(frozen=True)
class MeshParts:
    ref: ServiceRef
    group: GroupSpec  # the model-rendered group: its service, proxy task and ports


@dataclass
class ByoJob:
    source: str
    form: str  # hcl | json
    text: str
    job_id: str
    parts: list[MeshParts] = field(default_factory=list)
    api: dict[str, Any] | None = None  # the JSON form's job object


def _problem(where: str, what: str, message: str, fix: str) -> Problem:
    return Problem(f"{where}: {what}", message, fix)


# --- reading HCL (python-hcl2's parse tree, for block positions and lines) -------------------


def _hcl_tree(text: str, source: str) -> Any:
    try:
        import hcl2
    except ImportError:
        raise ModelError(
            [Problem(source, "python-hcl2 is not installed", "pip install python-hcl2")],
            source,
            subject="",
        ) from None
    try:
        return hcl2.parses_to_tree(text)
    except Exception as exc:  # lark's UnexpectedInput carries line and column
        line = getattr(exc, "line", None)
        column = getattr(exc, "column", None)
        token = getattr(exc, "token", None)
        where = f"{source}:{line}:{column}" if line else source
        near = f" near {str(token).strip()!r}" if token is not None else ""
        raise ModelError(
            [
                Problem(
                    where,
                    f"the job file is not valid HCL{near}",
                    "fix the HCL at that line (`nomad fmt -check` shows it), or give the "
                    "job in the JSON form",
                )
            ],
            source,
            subject="",
        ) from None


def _kids(node: Any) -> list[Any]:
    return list(getattr(node, "children", None) or [])


def _kind(node: Any) -> str:
    return str(getattr(node, "data", "") or "")


def _token(node: Any, name: str) -> Any:
    for c in _kids(node):
        if getattr(c, "type", None) == name:
            return c
    return None


def _literal(text: str, node: Any) -> Any:
    """The value of a plain string or integer expression; None for anything computed."""
    raw = text[node.meta.start_pos : node.meta.end_pos].strip()
    if raw.isdigit():
        return int(raw)
    if raw.startswith('"') and raw.endswith('"') and "${" not in raw and "%{" not in raw:
        try:
            return json.loads(raw)
        except ValueError:
            return None
    return None


@dataclass
class _Block:
    kind: str
    labels: list[str]
    line: int
    close: int  # offset of the closing brace
    depth: int
    attrs: dict[str, Any]
    attr_lines: dict[str, int]
    attr_text: dict[str, str]
    blocks: list[_Block]

    def children(self, kind: str) -> list[_Block]:
        return [b for b in self.blocks if b.kind == kind]


def _read_block(text: str, node: Any, depth: int) -> _Block:
    kids = _kids(node)
    kind = str(_kids(kids[0])[0]) if kids and _kids(kids[0]) else ""
    labels = [str(_literal(text, k)) for k in kids[1:] if _kind(k) in ("string", "identifier")]
    body = next((k for k in kids if _kind(k) == "body"), None)
    rbrace = _token(node, "RBRACE")
    block = _Block(kind, labels, node.meta.line, rbrace.start_pos, depth, {}, {}, {}, [])
    for item in _kids(body):
        if _kind(item) == "block":
            block.blocks.append(_read_block(text, item, depth + 1))
        elif _kind(item) == "attribute":
            parts = _kids(item)
            name = str(_kids(parts[0])[0])
            block.attrs[name] = _literal(text, parts[-1])
            block.attr_lines[name] = item.meta.line
            block.attr_text[name] = text[parts[-1].meta.start_pos : parts[-1].meta.end_pos]
    return block


def _hcl_refs(text: str, source: str) -> tuple[str, list[ServiceRef], list[Problem]]:
    tree = _hcl_tree(text, source)
    top = [_read_block(text, n, 0) for n in _kids(_kids(tree)[0]) if _kind(n) == "block"]
    jobs = [b for b in top if b.kind == "job"]
    if len(jobs) != 1 or not jobs[0].labels:
        raise ModelError(
            [Problem(source, "the file must hold exactly one job block", 'write job "<id>" {…}')],
            source,
            subject="",
        )
    job = jobs[0]
    refs: list[ServiceRef] = []
    problems: list[Problem] = []
    for group in job.children("group"):
        gname = group.labels[0] if group.labels else ""
        networks = group.children("network")
        network = networks[0] if networks else None
        used: list[tuple[int, str]] = []
        labels: list[str] = []
        for port in network.children("port") if network else []:
            label = port.labels[0] if port.labels else ""
            labels.append(label)
            for key in ("static", "to"):
                if isinstance(port.attrs.get(key), int):
                    used.append((port.attrs[key], f'port "{label}" {key} (line {port.line})'))
        for svc in group.children("service"):
            if isinstance(svc.attrs.get("port"), (int, str)) and str(svc.attrs["port"]).isdigit():
                used.append(
                    (int(svc.attrs["port"]), f"service port (line {svc.attr_lines['port']})")
                )
        tasks = tuple(t.labels[0] for t in group.children("task") if t.labels)
        for svc in group.children("service"):
            metas = svc.children("meta")
            if not metas and REF_KEY in svc.attr_text.get("meta", ""):
                problems.append(
                    _problem(
                        f"{source}:{svc.attr_lines['meta']}",
                        f'group "{gname}" service meta',
                        "meshkit reads its keys from a meta block, not a meta = {...} attribute",
                        'write meta { meshkit = "..." } (nomad fmt keeps it)',
                    )
                )
            meta = dict(metas[0].attrs) if metas else {}
            lines = dict(metas[0].attr_lines) if metas else {}
            if REF_KEY not in meta:
                for key in (k for k in meta if k.startswith("meshkit_")):
                    problems.append(
                        _problem(
                            f"{source}:{lines[key]}",
                            f'group "{gname}" service meta.{key}',
                            "a meshkit key without meta.meshkit (the pattern)",
                            'add meshkit = "native" | "sidecar" | "envoy", or drop the key',
                        )
                    )
                continue
            name = svc.attrs.get("name")
            where = f"{source}:{lines[REF_KEY]}"
            what = f'group "{gname}" service "{name}" meta.{REF_KEY}'
            ref, ref_problems = _ref(
                meta,
                where,
                what,
                group=gname,
                name=name,
                port=svc.attrs.get("port"),
                task=svc.attrs.get("task"),
                has_connect=bool(svc.children("connect")),
                network_mode=str((network.attrs.get("mode") if network else "") or ""),
                used=tuple(used),
                labels=tuple(labels),
                tasks=tasks,
            )
            problems += ref_problems
            if ref is not None:
                refs.append(
                    dataclasses.replace(
                        ref,
                        service_span=Span(svc.close, svc.depth + 1),
                        network_span=Span(network.close, network.depth + 1) if network else None,
                        group_span=Span(group.close, group.depth + 1),
                    )
                )
    return job.labels[0], refs, problems


# --- reading API JSON -----------------------------------------------------------------------


def _json_refs(job: Mapping[str, Any], source: str) -> tuple[list[ServiceRef], list[Problem]]:
    refs: list[ServiceRef] = []
    problems: list[Problem] = []
    for gi, group in enumerate(job.get("TaskGroups") or []):
        gname = str(group.get("Name") or "")
        networks = group.get("Networks") or []
        network = networks[0] if networks else None
        used: list[tuple[int, str]] = []
        labels: list[str] = []
        for kind in ("ReservedPorts", "DynamicPorts"):
            for port in (network or {}).get(kind) or []:
                labels.append(str(port.get("Label") or ""))
                for key in ("Value", "To"):
                    if isinstance(port.get(key), int) and port[key] > 0:
                        used.append((port[key], f'port "{port.get("Label")}" {key}'))
        services = group.get("Services") or []
        for svc in services:
            if str(svc.get("PortLabel") or "").isdigit():
                used.append((int(svc["PortLabel"]), "service PortLabel"))
        tasks = tuple(str(t.get("Name")) for t in group.get("Tasks") or [])
        for si, svc in enumerate(services):
            meta = dict(svc.get("Meta") or {})
            if REF_KEY not in meta:
                continue
            what = f"TaskGroups[{gi}] ({gname}).Services[{si}] ({svc.get('Name')}).Meta.{REF_KEY}"
            ref, ref_problems = _ref(
                meta,
                source,
                what,
                group=gname,
                name=svc.get("Name"),
                port=svc.get("PortLabel"),
                task=svc.get("TaskName"),
                has_connect=bool(svc.get("Connect")),
                network_mode=str((network or {}).get("Mode") or ""),
                used=tuple(used),
                labels=tuple(labels),
                tasks=tasks,
            )
            problems += ref_problems
            if ref is not None:
                refs.append(ref)
    return refs, problems


def _ref(
    meta: Mapping[str, Any],
    where: str,
    what: str,
    *,
    group: str,
    name: Any,
    port: Any,
    task: Any,
    has_connect: bool,
    network_mode: str,
    used: tuple[tuple[int, str], ...],
    labels: tuple[str, ...],
    tasks: tuple[str, ...],
) -> tuple[ServiceRef | None, list[Problem]]:
    problems: list[Problem] = []
    pattern = meta.get(REF_KEY)
    if pattern not in PATTERNS:
        problems.append(
            _problem(
                where, what, f"{pattern!r} is not a meshkit pattern", "use native, sidecar or envoy"
            )
        )
    for key in (k for k in meta if str(k).startswith("meshkit_") and k not in REF_KEYS):
        problems.append(
            _problem(where, f"{what} ({key})", "unknown meshkit key", f"use {', '.join(REF_KEYS)}")
        )
    acls_text = meta.get(ACLS_KEY)
    acls: bool | None = None
    if acls_text is not None:
        if str(acls_text).lower() not in ("true", "false"):
            problems.append(
                _problem(
                    where,
                    f"{what} ({ACLS_KEY})",
                    f"{acls_text!r} is not true or false",
                    'write "true" or "false"',
                )
            )
        acls = str(acls_text).lower() == "true"
    if not isinstance(name, str) or not name or "${" in name:
        problems.append(
            _problem(
                where,
                what,
                "the service has no literal name, so no model service to join",
                'write name = "<model service>"',
            )
        )
    if problems:
        return None, problems
    return (
        ServiceRef(
            group=group,
            name=str(name),
            pattern=str(pattern),
            consul_acls=acls,
            port="" if port is None else str(port),
            task="" if task is None else str(task),
            has_connect=has_connect,
            network_mode=network_mode,
            used_ports=used,
            port_labels=labels,
            task_names=tasks,
            where=where,
            field=what,
        ),
        [],
    )


# --- what meshkit fills in ------------------------------------------------------------------


def _parts(
    ref: ServiceRef, mesh: Mesh, settings: JobSettings
) -> tuple[MeshParts | None, list[Problem]]:
    by_name = {s.name: s for s in mesh.services}
    service: Service | None = by_name.get(ref.name)
    if service is None:
        return None, [
            _problem(
                ref.where,
                ref.field,
                f"service {ref.name!r} is not in the mesh model",
                f"use one of: {', '.join(sorted(by_name)) or '(none)'}, or add it to "
                "meshkit_services",
            )
        ]
    if service.sidecar is None:
        return None, [
            _problem(
                ref.where,
                ref.field,
                f"model service {ref.name!r} has no sidecar (it is outside the mesh)",
                "add a sidecar mapping to it in meshkit_services",
            )
        ]
    problems: list[Problem] = []
    native = ref.pattern == "native"
    if ref.has_connect:
        problems.append(
            _problem(
                ref.where,
                f"{ref.field}: connect",
                "the service already has a connect block, which meshkit writes",
                "remove the connect block, or drop meta.meshkit",
            )
        )
    if native and ref.port:
        problems.append(
            _problem(
                ref.where,
                f"{ref.field}: port",
                "the native pattern registers meshkit-proxy's mTLS listener, so meshkit "
                "writes the service port",
                'remove port (meshkit writes port = "mesh"; the app port comes from the '
                "mesh model)",
            )
        )
    if native and ref.task:
        problems.append(
            _problem(
                ref.where,
                f"{ref.field}: task",
                "the native pattern names meshkit-proxy as the service task",
                "remove task",
            )
        )
    if native and MESH_PORT_LABEL in ref.port_labels:
        problems.append(
            _problem(
                ref.where,
                f'{ref.field}: port "{MESH_PORT_LABEL}"',
                "the group already has a port with meshkit's label",
                "rename that port",
            )
        )
    if native and PROXY_TASK in ref.task_names:
        problems.append(
            _problem(
                ref.where,
                f'{ref.field}: task "{PROXY_TASK}"',
                "the group already has a task with meshkit's name",
                "rename that task",
            )
        )
    if not native and not ref.port:
        problems.append(
            _problem(
                ref.where,
                f"{ref.field}: port",
                "a Connect sidecar needs the service port (Nomad puts it into the sidecar's ID)",
                'write port = "<app port or label>"',
            )
        )
    mode = ref.network_mode or ("host" if native else "")
    if not native and mode != "bridge":
        problems.append(
            _problem(
                ref.where,
                f'group "{ref.group}" network.mode',
                f"pattern {ref.pattern} needs bridge networking (Nomad rejects a "
                "sidecar_service in host mode)",
                f'set network {{ mode = "bridge" }} in group "{ref.group}", or meta '
                'meshkit = "native"',
            )
        )
        mode = "bridge"
    for i, up in enumerate(service.sidecar.upstreams):
        for port, what in ref.used_ports:
            if up.local_bind_port == port:
                problems.append(
                    _problem(
                        ref.where,
                        f"{ref.field}: upstream {up.destination_name} local_bind_port",
                        f"{port} (mesh model services.{ref.name}.sidecar.upstreams[{i}]) is "
                        f"already used in group {ref.group!r} by {what}",
                        "choose another local_bind_port in the mesh model, or move the job's port",
                    )
                )
    if problems:
        return None, problems
    if ref.consul_acls is not None:
        settings = dataclasses.replace(
            settings, proxy=dataclasses.replace(settings.proxy, consul_acls=ref.consul_acls)
        )
    group = GroupSettings(
        pattern=ref.pattern,
        network_mode=mode,
        task=TaskSettings(config={"from": "the operator's job"}),
    )
    spec, shared = mesh_group(service, group, settings, None if native else ref.port)
    for p in shared:
        fix = p.fix
        for model_words, job_words in _FIX_WORDS:
            fix = fix.replace(model_words, job_words)
        problems.append(_problem(ref.where, f"{ref.field} ({p.path})", p.message, fix))
    return (None if problems else MeshParts(ref, spec)), problems


def byo_settings(data: Mapping[str, Any], source: str) -> list[Problem]:
    """Job settings keys that do not apply to an operator's own job (the file says them)."""
    return [
        Problem(
            f"{source}: job.{key}",
            "not used with a job file (the file says it)",
            "write it in the job file, or drop it",
        )
        for key in data
        if key not in BYO_SETTINGS_KEYS
    ]


def load(text: str, source: str, mesh: Mesh, settings_for: Any) -> ByoJob:
    """Read the operator's job (HCL or API JSON) and compute meshkit's parts.

    `settings_for(job_id)` gives the JobSettings (version, proxy). Raises ModelError
    naming the file, line (HCL), field and fix of every problem; nothing is returned half done.
    """
    stripped = text.lstrip()
    problems: list[Problem] = []
    api: dict[str, Any] | None = None
    if stripped.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            line = getattr(exc, "lineno", "?")
            raise ModelError(
                [
                    Problem(
                        f"{source}:{line}",
                        f"the job file is not valid JSON: {exc}",
                        "fix the JSON, or give the job as HCL",
                    )
                ],
                source,
                subject="",
            ) from None
        api = dict(data.get("Job", data)) if isinstance(data, dict) else {}
        job_id = str(api.get("ID") or "")
        if not job_id:
            raise ModelError(
                [Problem(f"{source}: Job.ID", "the job has no ID", "set ID (and Name)")],
                source,
                subject="",
            )
        refs, problems = _json_refs(api, source)
        form = "json"
    else:
        job_id, refs, problems = _hcl_refs(text, source)
        form = "hcl"
    settings: JobSettings = settings_for(job_id)
    if not refs and not problems:
        problems.append(
            Problem(
                source,
                "no service asks for meshkit",
                'add meta { meshkit = "sidecar" } (or native, envoy) to a group service',
            )
        )
    parts: list[MeshParts] = []
    seen_ports: dict[tuple[str, int], str] = {}
    for ref in refs:
        part, ref_problems = _parts(ref, mesh, settings)
        problems += ref_problems
        if part is None:
            continue
        if ref.network_mode == "bridge":  # one namespace per group: upstream ports are shared
            for up in (
                part.group.services[0].sidecar.upstreams if part.group.services[0].sidecar else ()
            ):
                key = (ref.group, up.local_bind_port)
                if key in seen_ports:
                    problems.append(
                        _problem(
                            ref.where,
                            f"{ref.field}: upstream {up.destination_name} local_bind_port",
                            f"{up.local_bind_port} is also an upstream port of "
                            f"{seen_ports[key]} in the same group",
                            "give one of them another local_bind_port in the mesh model",
                        )
                    )
                seen_ports[key] = ref.name
        parts.append(part)
    if problems:
        raise ModelError(problems, source, subject="")
    return ByoJob(source=source, form=form, text=text, job_id=job_id, parts=parts, api=api)


# --- writing: HCL splice, JSON merge ----------------------------------------------------------


def render_hcl(job: ByoJob, syntax: str) -> str:
    """The operator's file with meshkit's blocks inserted; every other byte as written."""
    inserts: list[tuple[int, int, str]] = []  # (offset, order, text)
    for n, part in enumerate(job.parts):
        ref = part.ref
        svc = part.group.services[0]
        if ref.service_span is None or ref.group_span is None:
            raise ValueError(f"{job.source}: {ref.field} was not read from HCL")
        depth = ref.service_span.depth
        note = f"{'  ' * depth}# meshkit: {ref.pattern} pattern for {ref.name}\n"
        text = note
        if svc.native:
            text += hcl_fragment("attr:port", svc.port, depth, syntax)
            text += hcl_fragment("attr:task", svc.task, depth, syntax)
        text += hcl_fragment("connect", svc, depth, syntax)
        for check in svc.checks:
            text += hcl_fragment("check", check, depth, syntax)
        inserts.append((ref.service_span.close, n, text))
        gdepth = ref.group_span.depth
        for port in part.group.ports:
            if ref.network_span is not None:
                inserts.append(
                    (
                        ref.network_span.close,
                        n,
                        hcl_fragment("port", port, ref.network_span.depth, syntax),
                    )
                )
            else:
                block = (
                    f"{'  ' * gdepth}network {{\n"
                    + hcl_fragment("attr:mode", "host", gdepth + 1, syntax)
                    + hcl_fragment("port", port, gdepth + 1, syntax)
                )
                inserts.append((ref.group_span.close, n, f"\n{block}{'  ' * gdepth}}}\n"))
        for task in part.group.tasks[1:]:  # [0] is the model's app task: the job has its own
            inserts.append(
                (ref.group_span.close, n, "\n" + hcl_fragment("task", task, gdepth, syntax))
            )
    # Each insertion point is fixed on the original text first (the start of the closing
    # brace's line, or the brace itself in a one-line block), then applied from the end so
    # earlier offsets stay valid; at one point the inserts keep their order.
    out = job.text
    placed: list[tuple[int, int, str]] = []
    for order, (offset, _part, text) in enumerate(inserts):
        line_start = out.rfind("\n", 0, offset) + 1
        if out[line_start:offset].strip() == "":
            placed.append((line_start, order, text))
        else:  # a one-line block: `service { name = "x" }`
            line = out[line_start:offset]
            indent = line[: len(line) - len(line.lstrip())]
            placed.append((offset, order, "\n" + text + indent))
    for point, _order, text in sorted(placed, reverse=True):
        out = out[:point] + text + out[point:]
    return out


def merge_api(job_api: Mapping[str, Any], job: ByoJob) -> dict[str, Any]:
    """The operator's job object (from the JSON form, or Nomad's `jobs/parse` of the HCL) with
    meshkit's parts merged in; a deep copy, the input is not touched."""
    out = copy.deepcopy(dict(job_api))
    groups = {str(g.get("Name")): g for g in out.get("TaskGroups") or []}
    for part in job.parts:
        ref = part.ref
        group = groups.get(ref.group)
        if group is None:
            raise ModelError(
                [
                    Problem(
                        job.source,
                        f"group {ref.group!r} is missing from the parsed job",
                        "check the file",
                    )
                ],
                job.source,
                subject="",
            )
        services = [s for s in group.get("Services") or [] if s.get("Name") == ref.name]
        if len(services) != 1:
            raise ModelError(
                [
                    Problem(
                        job.source,
                        f"group {ref.group!r} has {len(services)} services named {ref.name!r}",
                        "give each service its own name",
                    )
                ],
                job.source,
                subject="",
            )
        svc, spec = services[0], part.group.services[0]
        svc["Connect"] = api_connect(spec)
        if spec.native:
            svc["PortLabel"] = spec.port
            svc["TaskName"] = spec.task
            svc["Checks"] = list(svc.get("Checks") or []) + [api_check(c) for c in spec.checks]
            networks = group.get("Networks") or []
            if not networks:
                networks = [{"Mode": "host"}]
                group["Networks"] = networks
            for port in part.group.ports:
                key = "DynamicPorts" if port.static is None else "ReservedPorts"
                entry: dict[str, Any] = {"Label": port.label}
                if port.static is not None:
                    entry["Value"] = port.static
                if port.to is not None:
                    entry["To"] = port.to
                networks[0][key] = [*list(networks[0].get(key) or []), entry]
            group["Tasks"] = list(group.get("Tasks") or []) + [
                api_task(t) for t in part.group.tasks[1:]
            ]
    return out


def added_by_meshkit(job: ByoJob) -> list[tuple[str, str]]:
    """(group, service) pairs meshkit filled in, for reports and tests."""
    return [(p.ref.group, p.ref.name) for p in job.parts]


# --- the sequence shared by the module, the CLI and the filter ------------------------------

MAX_JOB_FILE_BYTES = 4 * 1024 * 1024


def read_job_file(path: str) -> str:
    """The job file's text, bounded in size; ModelError naming the file otherwise."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_JOB_FILE_BYTES + 1)
    except OSError as exc:
        raise ModelError(
            [Problem(path, f"cannot read the job file: {exc.strerror}", "check the path")],
            path,
            subject="",
        ) from None
    if len(data) > MAX_JOB_FILE_BYTES:
        raise ModelError(
            [Problem(path, f"larger than {MAX_JOB_FILE_BYTES} bytes", "is this a job file?")],
            path,
            subject="",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelError(
            [Problem(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})", "save as UTF-8")],
            path,
            subject="",
        ) from None


def settings_reader(
    data: Mapping[str, Any], source: str, version: str | None
) -> Callable[[str], JobSettings]:
    """JobSettings for the job file's ID from the few settings that apply (version, proxy)."""
    problems = byo_settings(data, source)
    if problems:
        raise ModelError(problems, source, subject="")

    def read(job_id: str) -> JobSettings:
        named = data.get("name")
        if named and named != job_id:
            raise ModelError(
                [
                    Problem(
                        f"{source}: job.name",
                        f"{named!r} is not the job file's job ID {job_id!r}",
                        "drop name, or make it the job file's ID",
                    )
                ],
                source,
                subject="",
            )
        return parse_job_settings(
            {**dict(data), "name": job_id}, source=source, nomad_version=version
        )

    return read


def job_for_nomad(n: Any, conn: Any, job: ByoJob) -> dict[str, Any]:
    """The API job to plan and register: the operator's job as Nomad itself parses it
    (`POST /v1/jobs/parse` for HCL, what Nomad users trust), with meshkit's parts merged."""
    if job.form == "json":
        return merge_api(job.api or {}, job)
    parsed = call(conn, f"parsing {job.source} (jobs/parse)", n.jobs.parse, job.text, False)
    if not isinstance(parsed, Mapping) or not parsed.get("ID"):
        raise NomadSubmitError(f"{job.source}: Nomad's jobs/parse gave no job")
    return merge_api(parsed, job)
