# SPDX-License-Identifier: MPL-2.0
"""The static file and the Consul-mode file read `public_listener` and `upstreams` with one
reader (fields.py), so they give the same answer for the same section: an upstream local bind
port of 0 and an upstream listed twice are refused in both, with the same text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from meshkit import flags
from meshkit.config import ConfigError
from meshkit.consul import configfile
from meshkit.static import file as staticfile


def _problems(tmp_path: Path, mode: str, upstreams: list[dict[str, Any]]) -> list[str]:
    """Every problem each loader reports, with the file name cut off."""
    data: dict[str, Any] = {
        "service": "web",
        "public_listener": {"bind_port": 21000, "local_service_address": "127.0.0.1:8080"},
        "upstreams": upstreams,
    }
    if mode == "consul":
        data["mode"] = "consul"
    else:  # static mode also needs its certificate files; their absence is reported too
        data["tls"] = {"cert_file": "cert.pem", "key_file": "key.pem", "ca_file": "ca.pem"}
        for item in upstreams:
            item["targets"] = [{"address": "127.0.0.1:9", "spiffe_id": _spiffe(item)}]
    path = tmp_path / f"{mode}.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        if mode == "consul":
            configfile.load(str(path))
        else:
            staticfile.load(flags.parse(["-config", str(path)], env={}))
    return [problem.removeprefix(f"{path}: ") for problem in err.value.problems]


def _spiffe(item: dict[str, Any]) -> str:
    return f"spiffe://1234.consul/ns/default/dc/dc1/svc/{item['destination_name']}"


@pytest.mark.parametrize(
    ("upstreams", "expected"),
    [
        (
            [{"destination_name": "db", "local_bind_port": 0}],
            "upstreams[0].local_bind_port: must not be 0",
        ),
        (
            [
                {"destination_name": "db", "local_bind_port": 9191},
                {"destination_name": "db", "local_bind_port": 9192},
            ],
            "upstreams[1]: service:db appears twice",
        ),
    ],
    ids=["port-0", "duplicate"],
)
def test_static_and_consul_files_give_the_same_answer(
    tmp_path: Path, upstreams: list[dict[str, Any]], expected: str
) -> None:
    consul = _problems(tmp_path, "consul", [dict(u) for u in upstreams])
    static = _problems(tmp_path, "static", [dict(u) for u in upstreams])
    assert consul == [expected]
    assert expected in static
    assert [p for p in static if p.startswith("upstreams")] == [expected]


def test_same_name_in_two_datacenters_is_two_upstreams_in_both(tmp_path: Path) -> None:
    """The key is (type, name, datacenter): db in dc1 and db in dc2 are two listeners."""
    ups = [
        {"destination_name": "db", "local_bind_port": 9191},
        {"destination_name": "db", "datacenter": "dc2", "local_bind_port": 9192},
    ]
    path = tmp_path / "consul.yaml"
    path.write_text(yaml.safe_dump({"mode": "consul", "service": "web", "upstreams": ups}))
    reg = configfile.load(str(path)).registration
    assert [u.key for u in reg.upstreams] == ["service:db", "service:db?dc=dc2"]
    static = _problems(tmp_path, "static", [dict(u) for u in ups])
    assert not [p for p in static if p.startswith("upstreams")], static
