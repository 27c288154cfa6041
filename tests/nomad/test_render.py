# SPDX-License-Identifier: MPL-2.0
"""Golden jobs for the three patterns, HCL and JSON, and their fidelity to Nomad's own shapes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import hcl2
import pytest

from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import parse_mesh
from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import (
    ModelError,
    format_duration,
    parse_duration,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_jobspec import build_job
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_render import (
    to_api,
    to_hcl,
    to_json,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_settings import (
    parse_job_settings,
)
from meshkit import flags
from meshkit.consul import configfile
from meshkit.consul.configfile import ConsulFile
from meshkit.flags import CommandLine
from tests.support.nomad_double import FIXTURES, fixture
from tests.support.nomad_model import USER_TEMPLATE, job_settings, mesh_data

GOLDEN = Path(__file__).parent / "golden"
PATTERNS = ("native", "sidecar", "envoy")


def render(pattern: str, **settings: Any) -> tuple[str, str, dict[str, Any]]:
    spec = build_job(parse_mesh(mesh_data(pattern)), parse_job_settings(job_settings(**settings)))
    return to_hcl(spec), to_json(spec), to_api(spec)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("MESHKIT_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"{path} missing; run with MESHKIT_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(), f"{name} differs from the golden file"


@pytest.mark.parametrize("pattern", PATTERNS)
def test_golden_hcl_and_json(pattern: str) -> None:
    hcl_text, json_text, _ = render(pattern)
    check_golden(f"{pattern}.nomad.hcl", hcl_text)
    check_golden(f"{pattern}.nomad.json", json_text)


# --- HCL: parses, and says what the JSON says ------------------------------------------------


def unquote(value: Any) -> Any:
    """python-hcl2 keeps HCL's quoting; turn a string literal or heredoc back into its value."""
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if k != "__is_block__"}
    if not isinstance(value, str):
        return value
    heredoc = re.match(r'^"<<(\w+)\n(.*)\n\1"$', value, re.S)
    if heredoc:
        body = heredoc.group(2) + "\n"
        return body.replace("$${", "${").replace("%%{", "%{")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        body = value[1:-1]
        out, i = [], 0
        while i < len(body):
            c = body[i]
            if c == "\\":
                nxt = body[i + 1]
                out.append({"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}[nxt])
                i += 2
            elif body.startswith("$${", i) or body.startswith("%%{", i):
                out.append(body[i + 1 : i + 3])
                i += 3
            else:
                out.append(c)
                i += 1
        return "".join(out)
    return value


def hcl_groups(text: str) -> dict[str, Any]:
    parsed = unquote(hcl2.loads(text))
    job = parsed["job"][0]["shop"]
    return {name: body for g in job["group"] for name, body in g.items()}


@pytest.mark.parametrize("pattern", PATTERNS)
def test_hcl_parses_and_matches_json(pattern: str) -> None:
    hcl_text, _, api = render(pattern)
    groups = hcl_groups(hcl_text)
    assert set(groups) == {g["Name"] for g in api["TaskGroups"]} == {"web", "db"}
    for g in api["TaskGroups"]:
        h = groups[g["Name"]]
        assert h["count"] == g["Count"]
        assert h["network"][0]["mode"] == g["Networks"][0]["Mode"]
        service, h_service = g["Services"][0], h["service"][0]
        assert h_service["name"] == service["Name"]
        assert h_service["port"] == service["PortLabel"]
        connect = h_service["connect"][0]
        if service["Connect"]["Native"]:
            assert connect["native"] is True
            assert h_service["task"] == service["TaskName"] == "meshkit-proxy"
        else:
            proxy = connect["sidecar_service"][0]["proxy"][0]
            h_ups = [
                (u["destination_name"], u.get("destination_type", ""), u["local_bind_port"])
                for u in proxy.get("upstreams", [])
            ]
            ups = service["Connect"]["SidecarService"]["Proxy"]["Upstreams"]
            assert h_ups == [
                (u["DestinationName"], u.get("DestinationType", ""), u["LocalBindPort"])
                for u in ups
            ]
            assert ("sidecar_task" in connect) == ("SidecarTask" in service["Connect"])
        h_tasks = {name: body for t in h["task"] for name, body in t.items()}
        for task in g["Tasks"]:
            h_task = h_tasks[task["Name"]]
            assert h_task["driver"] == task["Driver"]
            assert h_task["config"][0] == task["Config"]
            h_templates = [t["data"] for t in h_task.get("template", [])]
            assert h_templates == [t["EmbeddedTmpl"] for t in task.get("Templates", [])]
        r = h["restart"][0]
        assert parse_duration(r["interval"]) == g["RestartPolicy"]["Interval"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_user_template_survives_untouched(pattern: str) -> None:
    hcl_text, json_text, api = render(pattern)
    web = next(g for g in api["TaskGroups"] if g["Name"] == "web")
    app = next(t for t in web["Tasks"] if t["Name"] == "web")
    assert app["Templates"][0]["EmbeddedTmpl"] == USER_TEMPLATE
    assert app["Templates"][0]["Envvars"] is True
    assert (
        json.loads(json_text)["Job"]["TaskGroups"][0]["Tasks"][0]["Templates"][0]["EmbeddedTmpl"]
        == USER_TEMPLATE
    )
    # In HCL the consul-template calls appear literally; only HCL's own ${ and %{ are escaped.
    assert '{{ with secret "kv/web" }}API_KEY={{ .Data.key }}{{ end }}' in hcl_text
    assert "$${NOMAD_ALLOC_ID}" in hcl_text and "100%%{ok}" in hcl_text
    h_task = {n: b for t in hcl_groups(hcl_text)["web"]["task"] for n, b in t.items()}["web"]
    assert h_task["template"][0]["data"] == USER_TEMPLATE


def proxy_command_line(args: list[str], **nomad_env: str) -> CommandLine:
    """What meshkit-proxy's own flag parser makes of the args once Nomad interpolated them."""
    filled = []
    for arg in args:
        for key, value in nomad_env.items():
            arg = arg.replace("${" + key + "}", value)
        assert "${" not in arg, arg
        filled.append(arg)
    return flags.parse(filled, env={})


def proxy_task(api: dict[str, Any], group: str = "web") -> dict[str, Any]:
    tg = next(g for g in api["TaskGroups"] if g["Name"] == group)
    return dict(next(t for t in tg["Tasks"] if t["Name"] == "meshkit-proxy"))


def proxy_file(
    task: dict[str, Any], tmp_path: Path, **nomad_env: str
) -> tuple[CommandLine, ConsulFile]:
    """The native proxy as Nomad starts it: the template rendered (only consul-template's
    `env` function is used), written under the task dir, and `-config` parsed by the proxy."""
    (tpl,) = task["Templates"]
    assert tpl["DestPath"] == "local/meshkit-proxy.yaml" and tpl["ChangeMode"] == "restart"
    text = re.sub(
        r'\{\{ env "([A-Za-z_]+)" \}\}', lambda m: nomad_env[m.group(1)], tpl["EmbeddedTmpl"]
    )
    assert "{{" not in text, text
    (tmp_path / "local").mkdir(exist_ok=True)
    (tmp_path / tpl["DestPath"]).write_text(text)
    cmd = proxy_command_line(task["Config"]["args"], NOMAD_TASK_DIR=str(tmp_path / "local"))
    assert cmd.consul_file == str(tmp_path / "local" / "meshkit-proxy.yaml") and not cmd.static
    return cmd, configfile.load(cmd.consul_file)


def test_native_proxy_runs_from_a_templated_consul_mode_file(tmp_path: Path) -> None:
    _, _, api = render("native")
    proxy = proxy_task(api)
    _, file = proxy_file(proxy, tmp_path, NOMAD_IP_mesh="10.0.0.5", NOMAD_PORT_mesh="25000")
    reg = file.registration
    assert reg.public is not None
    assert reg.service == "web"
    assert (reg.public.bind_host, reg.public.bind_port) == ("10.0.0.5", 25000)
    assert (reg.public.local_host, reg.public.local_port) == ("127.0.0.1", 8080)
    assert [
        (u.name, u.dst_type, u.bind_host, u.bind_port, u.datacenter) for u in reg.upstreams
    ] == [
        ("db", "service", "127.0.0.1", 9191, ""),
        ("db-nearest", "prepared_query", "127.0.0.1", 9192, ""),
    ]
    assert proxy["Env"] == {"CONSUL_HTTP_ADDR": "127.0.0.1:8500"}
    web = next(g for g in api["TaskGroups"] if g["Name"] == "web")
    assert web["Networks"][0] == {"Mode": "host", "DynamicPorts": [{"Label": "mesh"}]}
    assert web["Services"][0]["TaskName"] == "meshkit-proxy"


def test_native_bridge_mode_uses_the_alloc_socket_and_a_fixed_inside_port(tmp_path: Path) -> None:
    _, _, api = render("native", groups={"web": {"network_mode": "bridge", "mesh_port": 20500}})
    web = next(g for g in api["TaskGroups"] if g["Name"] == "web")
    assert web["Networks"][0] == {
        "Mode": "bridge",
        "DynamicPorts": [{"Label": "mesh", "To": 20500}],
    }
    proxy = proxy_task(api)
    assert proxy["Env"]["CONSUL_HTTP_ADDR"] == "unix://${NOMAD_ALLOC_DIR}/tmp/consul_http.sock"
    reg = proxy_file(proxy, tmp_path)[1].registration
    assert reg.public is not None
    assert (reg.public.bind_host, reg.public.bind_port) == ("0.0.0.0", 20500)


def test_native_carries_datacenter_and_config_in_the_file(tmp_path: Path) -> None:
    data = mesh_data("native")
    web = data["meshkit_services"][0]
    web["sidecar"]["upstreams"][0]["datacenter"] = "dc2"
    web["sidecar"]["upstreams"][0]["config"] = {"connect_timeout_ms": 2500}
    web["sidecar"]["config"] = {"handshake_timeout_ms": 5000, "local_connect_timeout_ms": "750"}
    web["sidecar"]["admin_port"] = 19001
    spec = build_job(parse_mesh(data), parse_job_settings(job_settings()))
    hcl_text = to_hcl(spec)
    hcl2.loads(hcl_text)  # still HCL that python-hcl2 reads
    file = proxy_file(proxy_task(to_api(spec)), tmp_path, NOMAD_IP_mesh="::1", NOMAD_PORT_mesh="1")[
        1
    ]
    reg = file.registration
    assert reg.public is not None
    assert (reg.public.handshake_timeout_ms, reg.public.local_connect_timeout_ms) == (5000, 750)
    db = reg.upstreams[0]
    assert (db.name, db.datacenter, db.connect_timeout_ms) == ("db", "dc2", 2500)
    assert file.admin == ("127.0.0.1", 19001)
    # the user's own template on the app task is still there, untouched
    app = next(t for t in to_api(spec)["TaskGroups"][0]["Tasks"] if t["Name"] == "web")
    assert app["Templates"][0]["EmbeddedTmpl"] == USER_TEMPLATE


def test_native_refuses_config_keys_the_proxy_file_cannot_carry() -> None:
    data = mesh_data("native")
    web = data["meshkit_services"][0]
    web["sidecar"]["upstreams"][0]["config"] = {"protocol": "http"}
    web["sidecar"]["upstreams"][1]["config"] = {"connect_timeout_ms": '{{ env "X" }}'}
    web["sidecar"]["config"] = {"handshake_timeout_ms": 5000, "envoy_stats_tags": []}
    with pytest.raises(ModelError) as err:
        build_job(parse_mesh(data), parse_job_settings(job_settings()))
    paths = [p.path for p in err.value.problems]
    assert paths == [
        "services.web.sidecar.config.envoy_stats_tags",
        "services.web.sidecar.upstreams[0] (db).config.protocol",
        "services.web.sidecar.upstreams[1] (db-nearest).config.connect_timeout_ms",
    ]
    assert all("nomad.pattern: sidecar" in p.fix for p in err.value.problems[:2])
    assert "not a number of milliseconds" in err.value.problems[2].message


def test_sidecar_task_runs_meshkit_proxy_with_the_nomad_proxy_id() -> None:
    _, _, api = render("sidecar")
    web = next(g for g in api["TaskGroups"] if g["Name"] == "web")
    task = web["Services"][0]["Connect"]["SidecarTask"]
    assert task["Driver"] == "raw_exec"
    assert task["Config"]["args"] == [
        "-proxy-id",
        "_nomad-task-${NOMAD_ALLOC_ID}-group-${NOMAD_GROUP_NAME}-web-8080-sidecar-proxy",
    ]
    cmd = proxy_command_line(task["Config"]["args"], NOMAD_ALLOC_ID="a1", NOMAD_GROUP_NAME="web")
    assert cmd.proxy_id == "_nomad-task-a1-group-web-web-8080-sidecar-proxy"
    assert "SidecarTask" not in render("envoy")[2]["TaskGroups"][0]["Services"][0]["Connect"]


# --- JSON: Go field names and units, checked against the recorded Nomad job -----------------


def key_paths(value: Any, prefix: str = "") -> set[str]:
    """Every key as a path with list indexes and map keys of free-form maps collapsed."""
    out: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if prefix.endswith(("Config", "Meta", "Env")):
                continue  # driver config, meta and env keys are the user's own
            path = f"{prefix}.{k}" if prefix else k
            out.add(path)
            out |= key_paths(v, path)
    elif isinstance(value, list):
        for v in value:
            out |= key_paths(v, prefix + "[]")
    return out


# Fields newer than the recorded 0.11.8 job (or null there), each with where Nomad defines it.
LATER_FIELDS = {
    "TaskGroups[].Services[].TaskName": "0.12.0 api.Service.TaskName (native)",
    "TaskGroups[].Services[].Checks[].Name": "api.ServiceCheck",
    "TaskGroups[].Services[].Checks[].Type": "api.ServiceCheck",
    "TaskGroups[].Services[].Checks[].PortLabel": "api.ServiceCheck",
    "TaskGroups[].Services[].Checks[].Interval": "api.ServiceCheck (ns)",
    "TaskGroups[].Services[].Checks[].Timeout": "api.ServiceCheck (ns)",
    "TaskGroups[].Networks[].DynamicPorts[].Label": "api.Port",
    "TaskGroups[].Networks[].DynamicPorts[].To": "api.Port",
    "TaskGroups[].Networks[].ReservedPorts[].Label": "api.Port",
    "TaskGroups[].Networks[].ReservedPorts[].Value": "api.Port (a static port is Value)",
    "TaskGroups[].Services[].Connect.SidecarService.Proxy.Upstreams[].DestinationType": "1.6.2",
    "TaskGroups[].Tasks[].Templates[].EmbeddedTmpl": "api.Template",
    "TaskGroups[].Tasks[].Templates[].DestPath": "api.Template",
    "TaskGroups[].Tasks[].Templates[].ChangeMode": "api.Template",
    "TaskGroups[].Tasks[].Templates[].ChangeSignal": "api.Template",
    "TaskGroups[].Tasks[].Templates[].Envvars": "api.Template",
}


def test_json_uses_recorded_go_field_names() -> None:
    recorded = key_paths(fixture("n03-nomad-jobs-parse.json"))
    ours: set[str] = set()
    for pattern in PATTERNS:
        ours |= key_paths(render(pattern)[2])
    ours |= key_paths(render("native", groups={"web": {"static_port": 21000}})[2])
    unknown = ours - recorded - set(LATER_FIELDS)
    assert not unknown, f"keys Nomad would silently drop: {sorted(unknown)}"
    assert "TaskGroups[].Services[].PortLabel" in ours
    assert "TaskGroups[].Services[].Port" not in ours


def test_durations_are_nanoseconds_like_the_recorded_defaults() -> None:
    recorded_update = fixture("n03-nomad-jobs-parse.json")["TaskGroups"][0]["Update"]
    _, _, api = render("sidecar")
    ours = api["TaskGroups"][0]["Update"]
    for key in ("MaxParallel", "HealthCheck", "MinHealthyTime", "HealthyDeadline"):
        assert ours[key] == recorded_update[key], key
    assert ours["ProgressDeadline"] == recorded_update["ProgressDeadline"] == 600 * 10**9
    assert api["TaskGroups"][0]["RestartPolicy"]["Delay"] == 15 * 10**9
    assert format_duration(parse_duration("1h1m1s")) == "1h1m1s"
    assert parse_duration(90 * 10**9) == 90 * 10**9 and format_duration(90 * 10**9) == "1m30s"


def test_recorded_countapi_job_is_what_we_render_for_0_11_8() -> None:
    """The recorded bridge job (count-api -> count-db) from our model, for a 0.11.8 cluster."""
    mesh = parse_mesh(
        {
            "services": [
                {
                    "name": "count-api",
                    "port": 9001,
                    "sidecar": {
                        "upstreams": [{"destination_name": "count-db", "local_bind_port": 5432}]
                    },
                    "nomad": {
                        "pattern": "envoy",
                        "task": {"driver": "raw_exec", "config": {"command": "/usr/bin/python3"}},
                    },
                }
            ]
        }
    )
    settings = parse_job_settings({"name": "countapi", "nomad_version": "0.11.8"})
    ours = to_api(build_job(mesh, settings))["TaskGroups"][0]
    recorded = fixture("n03-nomad-jobs-parse.json")["TaskGroups"][0]
    assert ours["Networks"][0]["Mode"] == recorded["Networks"][0]["Mode"] == "bridge"
    mine, theirs = ours["Services"][0], recorded["Services"][0]
    assert (mine["Name"], mine["PortLabel"]) == (theirs["Name"], theirs["PortLabel"])
    assert (
        mine["Connect"]["SidecarService"]["Proxy"]["Upstreams"]
        == theirs["Connect"]["SidecarService"]["Proxy"]["Upstreams"]
    )


def test_bad_settings_report_every_problem_with_a_fix() -> None:
    with pytest.raises(ModelError) as err:
        parse_job_settings(
            {
                "name": "bad name!",
                "type": "daemon",
                "update": {"min_healthy_time": "ten seconds"},
                "colour": "blue",
            }
        )
    text = str(err.value)
    for fragment in ("job.name", "job.type", "job.update.min_healthy_time", "job.colour"):
        assert fragment in text
    assert len(err.value.problems) == 4


def test_host_mode_sidecar_and_missing_app_config_are_refused() -> None:
    data = mesh_data("sidecar")
    data["meshkit_services"][1]["nomad"] = {"pattern": "sidecar", "network_mode": "host"}
    with pytest.raises(ModelError) as err:
        build_job(parse_mesh(data), parse_job_settings(job_settings()))
    paths = [p.path for p in err.value.problems]
    assert "services.db.nomad.network_mode" in paths
    assert "services.db.nomad.task.config" in paths


def test_sidecar_proxy_id_is_the_one_nomad_registered_in_consul() -> None:
    """The recorded Nomad 0.11.8 registration (consul-1.7.14/c41) names the sidecar we pass."""
    registered = json.loads(
        (FIXTURES.parent / "consul-1.7.14" / "c41-nomad-consul-agent-services.json").read_text()
    )
    proxy = next(v for v in registered.values() if v.get("Kind") == "connect-proxy")
    alloc = fixture("n06-nomad-job-allocations.json")[0]
    mesh = parse_mesh(
        {
            "services": [
                {
                    "name": "count-api",
                    "port": 9001,
                    "sidecar": {
                        "upstreams": [{"destination_name": "count-db", "local_bind_port": 5432}]
                    },
                    "nomad": {"pattern": "sidecar", "task": {"config": {"command": "/bin/true"}}},
                }
            ]
        }
    )
    job = to_api(
        build_job(mesh, parse_job_settings({"name": "countapi", "nomad_version": "0.11.8"}))
    )
    args = job["TaskGroups"][0]["Services"][0]["Connect"]["SidecarTask"]["Config"]["args"]
    cmd = proxy_command_line(args, NOMAD_ALLOC_ID=alloc["ID"], NOMAD_GROUP_NAME=alloc["TaskGroup"])
    assert cmd.proxy_id == proxy["ID"]


def test_sidecar_reads_the_service_identity_token_when_consul_acls_are_on() -> None:
    _, _, api = render("sidecar", proxy={"consul_acls": True})
    task = api["TaskGroups"][0]["Services"][0]["Connect"]["SidecarTask"]
    cmd = proxy_command_line(
        task["Config"]["args"], NOMAD_ALLOC_ID="a", NOMAD_GROUP_NAME="web", NOMAD_SECRETS_DIR="/s"
    )
    assert cmd.http.token_file == "/s/si_token"
    assert (
        "-token-file"
        not in render("sidecar")[2]["TaskGroups"][0]["Services"][0]["Connect"]["SidecarTask"][
            "Config"
        ]["args"]
    )


def test_static_port_is_a_reserved_port_with_value() -> None:
    hcl_text, _, api = render("native", groups={"web": {"static_port": 21000}})
    web = next(g for g in api["TaskGroups"] if g["Name"] == "web")
    assert web["Networks"][0] == {
        "Mode": "host",
        "ReservedPorts": [{"Label": "mesh", "Value": 21000}],
    }
    assert hcl_groups(hcl_text)["web"]["network"][0]["port"] == [{"mesh": {"static": 21000}}]
