# SPDX-License-Identifier: MPL-2.0
"""`meshkit render` as a user runs it: a real process, real files, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.support.mesh_examples import good
from tests.support.meshkit_cli import meshkit_render

ROOT = Path(__file__).resolve().parents[2]


def test_render_prints_every_form(tmp_path: Path) -> None:
    data = good()
    group = {k: v for k, v in data.items() if k != "meshkit_services"}
    host = {"meshkit_services": data["meshkit_services"]}
    (tmp_path / "all.yml").write_text(yaml.safe_dump(group))
    (tmp_path / "h1.yml").write_text(yaml.safe_dump(host))
    text = meshkit_render(tmp_path / "all.yml", tmp_path / "h1.yml")
    assert text.returncode == 0, text.stderr
    assert "# service web: PUT /v1/agent/service/register?replace-existing-checks" in text.stdout
    assert "# prepared query db-nearest: POST /v1/query" in text.stdout
    assert "# intentions to db: PUT /v1/config" in text.stdout
    assert "127.0.0.1:9192  service 'web' upstream 'db-nearest'" in text.stdout
    doc = meshkit_render(tmp_path / "all.yml", tmp_path / "h1.yml", "--json")
    out = json.loads(doc.stdout)
    assert [b["ID"] for b in out["agent_registrations"]] == ["db", "web"]
    assert out["intentions"]["legacy"][0]["SourceName"] == "web"
    config = tmp_path / "meshkit.json"
    written = meshkit_render(tmp_path / "all.yml", tmp_path / "h1.yml", "--config-file", config)
    assert written.returncode == 0 and written.stdout == ""
    assert config.read_text() == out["agent_config_file"]
    again = meshkit_render(tmp_path / "all.yml", tmp_path / "h1.yml", "--json")
    assert again.stdout == doc.stdout  # deterministic


def test_render_exits_2_listing_every_problem(tmp_path: Path) -> None:
    data = good()
    data["meshkit_services"][1]["sidecar"]["upstreams"][0]["local_bind_address"] = "10.0.0.1"
    data["meshkit_services"][1]["sidecar"]["upstreams"][1]["destination_name"] = "db-far"
    data["meshkit_services"][0]["port"] = 21001
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(data))
    result = meshkit_render(path)
    assert result.returncode == 2 and result.stdout == ""
    assert f"{path}: 3 problem(s)" in result.stderr
    for fragment in ("local_bind_address 10.0.0.1", "'db-far'", "inside 21000-21255"):
        assert fragment in result.stderr
    assert meshkit_render(path, "--known-query", "db-far").returncode == 2  # two problems remain


def test_render_bad_files(tmp_path: Path) -> None:
    missing = meshkit_render(tmp_path / "nope.yml")
    assert missing.returncode == 2 and "nope.yml: cannot read" in missing.stderr
    (tmp_path / "broken.yml").write_text("meshkit_services: [\n")
    broken = meshkit_render(tmp_path / "broken.yml")
    assert broken.returncode == 2 and "broken.yml: not valid YAML" in broken.stderr
    (tmp_path / "list.yml").write_text("- a\n")
    listed = meshkit_render(tmp_path / "list.yml")
    assert listed.returncode == 2 and "expected a mapping" in listed.stderr


def test_render_finds_the_collection_on_ansible_collections_path(tmp_path: Path) -> None:
    (tmp_path / "v.yml").write_text(yaml.safe_dump({"meshkit_services": [{"name": "a"}]}))
    env = {"ANSIBLE_COLLECTIONS_PATH": str(ROOT / "collections" / "ansible_collections")}
    result = meshkit_render(tmp_path / "v.yml", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["agent_registrations"][0]["ID"] == "a"
