# SPDX-License-Identifier: MPL-2.0
"""Every systemd unit the roles render passes `systemd-analyze verify`, hardening included."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="needs systemd-analyze"
)

HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "PrivateTmp": "yes",
    "ProtectHome": "yes",
    "CapabilityBoundingSet": "",
    "Restart": "on-failure",
}


def verify(unit: Path) -> str:
    """systemd-analyze exits 0 on many parse errors, so any complaint counts."""
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    return (
        (proc.stdout + proc.stderr).strip()
        if proc.returncode == 0
        else f"rc={proc.returncode} {proc.stderr}"
    )


def directives(unit: Path) -> dict[str, str]:
    out = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    """An install prefix whose current release is this checkout's virtualenv (a real
    meshkit-proxy executable, which `systemd-analyze verify` insists on)."""
    root = tmp_path / "opt"
    (root / "releases").mkdir(parents=True)
    venv = Path(sys.prefix)  # the virtualenv running the tests, with meshkit installed
    if not (venv / "bin" / "meshkit-proxy").exists():
        pytest.skip(f"no meshkit-proxy in {venv}: install the checkout (pip install -e .)")
    (root / "current").symlink_to(venv)
    (root / "releases" / "r1").symlink_to(venv)
    return root


def test_proxy_template_unit_verifies_with_hardening(render, tmp_path, prefix):
    unit = render(
        "mesh_proxy", "meshkit-proxy@.service.j2", tmp_path / "meshkit-proxy@web-1.service",
        mesh_proxy_prefix=str(prefix),
    )  # fmt: skip
    assert verify(unit) == ""
    got = directives(unit)
    for key, value in HARDENING.items():
        assert got[key] == value, key
    assert got["RestrictAddressFamilies"] == "AF_INET AF_INET6 AF_UNIX"
    assert got["ExecStart"].startswith(f"{prefix}/current/bin/meshkit-proxy -sidecar-for %i ")
    assert "-admin-bind ${MESHKIT_ADMIN_BIND}" in got["ExecStart"]
    assert got["EnvironmentFile"] == "/etc/meshkit/proxy/%i.env"


def exposure(unit: Path) -> float:
    """`systemd-analyze security` of a unit file, offline (no running systemd needed)."""
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True, text=True, check=False, cwd=unit.parent,
    )  # fmt: skip
    for line in proc.stdout.splitlines():
        if "Overall exposure level" in line:
            return float(line.split(":")[1].split()[0])
    raise AssertionError(f"no exposure level in: {proc.stdout}{proc.stderr}")


def test_proxy_unit_exposure_is_ok_or_better(render, tmp_path, prefix):
    """A security reviewer's bar: `systemd-analyze security` exposure 2.0 ("OK") or lower."""
    unit = render(
        "mesh_proxy", "meshkit-proxy@.service.j2", tmp_path / "meshkit-proxy@web-1.service",
        mesh_proxy_prefix=str(prefix),
    )  # fmt: skip
    got = directives(unit)
    assert got["SystemCallFilter"] == "~@privileged @resources"  # the last of the two lines
    assert got["ProtectProc"] == "invisible" and got["ProcSubset"] == "pid"
    assert exposure(unit) <= 2.0


def test_verify_catches_a_bad_knob(render, tmp_path, prefix):
    """The check above can fail: an unknown address family is reported."""
    unit = render(
        "mesh_proxy", "meshkit-proxy@.service.j2", tmp_path / "meshkit-proxy@db.service",
        mesh_proxy_prefix=str(prefix), mesh_proxy_restrict_address_families=["AF_BOGUS"],
    )  # fmt: skip
    assert "AF_BOGUS" in verify(unit)


def test_dev_agent_unit_verifies(render, tmp_path, prefix):
    unit = render(
        "consul_dev", "meshkit-dev-agent.service.j2", tmp_path / "meshkit-dev-agent.service",
        consul_dev_prefix=str(prefix), _consul_dev_release="r1",
        _consul_dev_args=["-data-dir", "/var/lib/meshkit-dev-agent", "-http-addr",
                          "198.18.0.10:8500", "-allow-non-loopback"],
    )  # fmt: skip
    assert verify(unit) == ""
    got = directives(unit)
    for key, value in HARDENING.items():
        assert got[key] == value, key
    assert got["ExecStart"] == (
        f"{prefix}/releases/r1/bin/meshkit dev-agent -data-dir /var/lib/meshkit-dev-agent "
        "-http-addr 198.18.0.10:8500 -allow-non-loopback"
    )


def test_nftables_boot_unit_verifies(render, tmp_path):
    unit = render(
        "loopback_guard", "meshkit-nftables.service.j2", tmp_path / "meshkit-nftables.service"
    )
    assert verify(unit) == ""
    assert directives(unit)["ExecStart"] == "/usr/sbin/nft -f /etc/meshkit/nftables/meshkit.nft"


def test_proxy_environment_file(render, tmp_path):
    env = render(
        "mesh_proxy", "proxy.env.j2", tmp_path / "web-1.env",
        item={"id": "web-1", "name": "web", "admin_port": 19000, "allow_non_loopback": False},
        mesh_proxy_consul_http_addr="198.18.0.10:8500", mesh_proxy_consul_token="s3cret",
        mesh_proxy_environment={"CONSUL_CACERT": "/etc/consul.d/ca.pem"},
    )  # fmt: skip
    got = directives(env)
    assert got["CONSUL_HTTP_ADDR"] == "198.18.0.10:8500"
    assert got["CONSUL_HTTP_TOKEN_FILE"] == "/etc/meshkit/proxy/web-1.token"
    assert got["CONSUL_CACERT"] == "/etc/consul.d/ca.pem"
    assert got["MESHKIT_ADMIN_BIND"] == "127.0.0.1:19000"
    assert got["MESHKIT_PROXY_ARGS"] == "-log-level info"
    assert "s3cret" not in env.read_text()


def test_proxy_host_unit_verifies_with_the_same_hardening(render, tmp_path, prefix):
    """mesh_proxy_process_model: shared. The host unit hardens exactly as the per-proxy unit."""
    host = render(
        "mesh_proxy", "meshkit-proxy-host.service.j2", tmp_path / "meshkit-proxy-host.service",
        mesh_proxy_prefix=str(prefix),
    )  # fmt: skip
    per_proxy = render(
        "mesh_proxy", "meshkit-proxy@.service.j2", tmp_path / "meshkit-proxy@web-1.service",
        mesh_proxy_prefix=str(prefix),
    )  # fmt: skip
    assert verify(host) == ""
    got, want = directives(host), directives(per_proxy)
    for key in (*HARDENING, "RestrictAddressFamilies", "SystemCallFilter", "ProtectProc",
                "ProcSubset", "User", "Group", "UMask", "LimitNOFILE", "PrivateDevices",
                "ProtectKernelTunables", "RestrictNamespaces", "SystemCallArchitectures",
                "DevicePolicy", "RemoveIPC", "PrivateMounts", "LockPersonality"):  # fmt: skip
        assert got[key] == want[key], key
    lines = per_proxy.read_text().splitlines()
    block = lines[lines.index("NoNewPrivileges=yes") : lines.index("DevicePolicy=closed") + 1]
    hardening = [line for line in block if "=" in line and not line.startswith("#")]
    assert len(hardening) > 20
    for line in hardening:  # every line of the per-proxy unit's hardening block, in order
        assert line in host.read_text().splitlines(), line
    assert got["ExecStart"] == f"{prefix}/current/bin/meshkit-proxy-host -dir /etc/meshkit/proxy"
    assert got["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert got["RuntimeDirectory"] == "meshkit-proxy-host"
    assert got["KillMode"] == "mixed"
    assert "EnvironmentFile" not in got
    assert exposure(host) <= 2.0
