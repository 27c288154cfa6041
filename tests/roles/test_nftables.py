# SPDX-License-Identifier: MPL-2.0
"""The loopback_guard ruleset: valid for `nft -c`, and loading it replaces only its own table.

Loading happens inside a private network namespace (`unshare -n`), never on this machine's own
ruleset.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.ansible_run import playbook

HERE = Path(__file__).resolve().parent

NFT = shutil.which("nft") or "/usr/sbin/nft"
pytestmark = pytest.mark.skipif(not Path(NFT).exists(), reason="needs nft")

MODEL: list[dict[str, Any]] = [
    {"name": "web", "port": 8080,
     "sidecar": {"port": 21000, "upstreams": [{"destination_name": "db", "local_bind_port": 9191},
                                              {"destination_name": "q", "local_bind_port": 9192}]}},
    {"name": "db", "id": "db-1", "port": 5432, "sidecar": {"local_service_port": 5433}},
    {"name": "outside", "port": 9999},
    {"name": "exposed", "port": 7777, "allow_non_loopback": True, "address": "192.0.2.1",
     "sidecar": {}},
]  # fmt: skip


def render(tmp_path: Path, services: list[dict[str, Any]], **extra: Any) -> Path:
    dest = tmp_path / "meshkit.nft"
    run = playbook(
        HERE / "render_nft.yml",
        {"dest": str(dest), "meshkit_services": services, **extra},
        tmp_path,
    )
    assert run.rc == 0, run.output
    return dest


def in_netns(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["unshare", "-n", "sh", "-ec", script], capture_output=True, text=True, check=False
    )


def table(listing: str, name: str) -> dict[str, Any]:
    for item in json.loads(listing)["nftables"]:
        if "table" in item and item["table"]["name"] == name:
            return dict(item["table"])
    return {}


def test_ruleset_guards_proxied_app_ports_only(tmp_path):
    ruleset = render(tmp_path, MODEL, loopback_guard_upstream_users={"web": ["root", "nobody"]})
    check = subprocess.run([NFT, "-c", "-f", str(ruleset)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    text = ruleset.read_text()
    # web's app port and db's local_service_port; not the unproxied or the exposed service.
    assert "elements = { 5433, 8080 }" in text
    assert 'iifname != "lo" tcp dport @app_ports counter drop' in text
    assert 'oifname "lo" tcp dport 9191 meta skuid != { 0, 65534 }' in text
    assert 'oifname "lo" tcp dport 9192 meta skuid != { 0, 65534 }' in text


def test_ruleset_without_services_is_valid(tmp_path):
    ruleset = render(tmp_path, [])
    check = subprocess.run([NFT, "-c", "-f", str(ruleset)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "skuid" not in ruleset.read_text()


def test_loading_replaces_only_the_meshkit_table(tmp_path):
    first = render(tmp_path, MODEL)
    second = tmp_path / "second.nft"
    second.write_text(first.read_text().replace("5433, 8080", "8080"))
    proc = in_netns(
        f"""
        {NFT} add table inet other
        {NFT} add chain inet other keep '{{ type filter hook input priority 0; }}'
        {NFT} -f {first}
        {NFT} -f {first}
        {NFT} -j list ruleset > {tmp_path}/one.json
        {NFT} -f {second}
        {NFT} -j list ruleset > {tmp_path}/two.json
        """
    )
    if proc.returncode != 0 and "Operation not permitted" in proc.stderr:
        pytest.skip("no permission to create a network namespace here")
    assert proc.returncode == 0, proc.stderr
    one = (tmp_path / "one.json").read_text()
    two = (tmp_path / "two.json").read_text()
    for listing in (one, two):
        assert table(listing, "other"), "another table was touched"
        assert table(listing, "meshkit")
        names = [i["table"]["name"] for i in json.loads(listing)["nftables"] if "table" in i]
        assert names.count("meshkit") == 1
    sets = [i["set"] for i in json.loads(two)["nftables"] if "set" in i]
    assert sets[0]["elem"] == [8080]
    chains = [i["chain"]["name"] for i in json.loads(two)["nftables"] if "chain" in i]
    assert "keep" in chains
