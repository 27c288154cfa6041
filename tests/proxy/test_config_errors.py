# SPDX-License-Identifier: MPL-2.0
"""Bad configuration: each problem is its own clear line naming file and field; exit code 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.pki_files import ThrowawayCA
from tests.support.ports import free_port
from tests.support.proxy_process import run_proxy_cli
from tests.support.static_mesh import inbound_config, outbound_config


def _good(ca: ThrowawayCA) -> dict[str, Any]:
    db = ca.leaf("db")
    config = inbound_config("db", db, [ca.root_file()], 8080, free_port())
    target = {"address": "127.0.0.1:21000", "spiffe_id": ca.identity("cache").uri}
    config["upstreams"] = outbound_config("db", db, [], [target], free_port())["upstreams"]
    return config


def _run(tmp_path: Path, config: dict[str, Any] | str, *flags: str) -> tuple[int, list[str]]:
    path = tmp_path / "proxy.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    done = run_proxy_cli("-config", str(path), *flags)
    lines = [line for line in done.stderr.splitlines() if line.startswith("meshkit-proxy:")]
    return done.returncode, lines


CASES: list[tuple[str, Any, str]] = [
    (
        "top-level typo",
        lambda c: c.update(drain_timeout=5),
        "drain_timeout: unknown key (did you mean 'drain_timeout_ms'?)",
    ),
    (
        "nested typo",
        lambda c: c["public_listener"].update(handshake_timeout=5),
        "public_listener.handshake_timeout: unknown key (did you mean 'handshake_timeout_ms'?)",
    ),
    (
        "missing file",
        lambda c: c["tls"].update(key_file="/nonexistent/key.pem"),
        "tls.key_file: file '/nonexistent/key.pem' does not exist",
    ),
    (
        "non-loopback app",
        lambda c: c["public_listener"].update(local_service_address="10.1.2.3:8080"),
        "is not a loopback address",
    ),
    (
        "non-loopback upstream",
        lambda c: c["upstreams"][0].update(local_bind_address="0.0.0.0"),
        "upstream 'db' binds 0.0.0.0, which is not loopback",
    ),
    (
        "bad timeout",
        lambda c: c["upstreams"][0].update(connect_timeout_ms="soon"),
        "upstreams[0].connect_timeout_ms: 'soon' is not a number of milliseconds",
    ),
    (
        "negative timeout",
        lambda c: c["public_listener"].update(handshake_timeout_ms=-5),
        "public_listener.handshake_timeout_ms: -5 must be a positive number",
    ),
    (
        "bad spiffe id",
        lambda c: c["upstreams"][0]["targets"][0].update(spiffe_id="spiffe://td/agent/x"),
        "upstreams[0].targets[0].spiffe_id: not a Consul service identity",
    ),
    (
        "bad target address",
        lambda c: c["upstreams"][0]["targets"][0].update(address="nowhere"),
        "upstreams[0].targets[0].address: 'nowhere' is not HOST:PORT",
    ),
    (
        "target typo",
        lambda c: c["upstreams"][0]["targets"][0].update(spiffe=1),
        "upstreams[0].targets[0].spiffe: unknown key",
    ),
    (
        "bad port",
        lambda c: c["public_listener"].update(bind_port=70000),
        "public_listener.bind_port: must be a port number 0-65535, got 70000",
    ),
    (
        "bad authz default",
        lambda c: c["authorization"].update(default="maybe"),
        "authorization.default: must be allow or deny",
    ),
    (
        "bad destination type",
        lambda c: c["upstreams"][0].update(destination_type="db"),
        "upstreams[0].destination_type: must be service or prepared_query",
    ),
    (
        "admin not loopback",
        lambda c: c.update(admin={"bind": "0.0.0.0:19000"}),
        "admin bind 0.0.0.0 is not loopback",
    ),
]


@pytest.mark.parametrize("mutate,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_bad_field_has_its_own_message(
    tmp_path: Path, ca: ThrowawayCA, mutate: Any, expected: str
) -> None:
    config = _good(ca)
    mutate(config)
    code, lines = _run(tmp_path, config)
    assert code == 2
    assert len(lines) == 1, lines
    assert str(tmp_path / "proxy.yaml") in lines[0]
    assert expected in lines[0]


def test_several_problems_are_all_reported(tmp_path: Path, ca: ThrowawayCA) -> None:
    config = _good(ca)
    config["tls"]["cert_flie"] = config["tls"].pop("cert_file")
    config["upstreams"][0]["connect_timeout_ms"] = "never"
    config["extra"] = True
    code, lines = _run(tmp_path, config)
    assert code == 2
    joined = "\n".join(lines)
    assert "tls.cert_flie: unknown key" in joined
    assert "tls.cert_file: missing" in joined
    assert "connect_timeout_ms: 'never'" in joined
    assert "extra: unknown key" in joined
    assert len(lines) == 4, lines


def test_non_loopback_app_is_allowed_with_the_override(tmp_path: Path, ca: ThrowawayCA) -> None:
    config = _good(ca)
    config["public_listener"]["local_service_address"] = "10.1.2.3:8080"
    code, lines = _run(tmp_path, config, "-allow-non-loopback-service", "-service", "db", "-bogus")
    assert code == 2 and "flag provided but not defined: -bogus" in lines[0]
    from meshkit.flags import parse
    from meshkit.static import file as staticfile

    path = tmp_path / "proxy.yaml"
    setup = staticfile.load(parse(["-config", str(path), "-allow-non-loopback-service"]))
    assert setup.config.public is not None
    assert setup.config.public.local_host == "10.1.2.3"


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    code, lines = _run(tmp_path, "service: [unclosed\n")
    assert code == 2 and "not valid YAML" in lines[0]
    done = run_proxy_cli("-config", str(tmp_path / "absent.yaml"))
    assert done.returncode == 2 and "cannot read" in done.stderr


def test_key_that_does_not_match_the_certificate(tmp_path: Path, ca: ThrowawayCA) -> None:
    config = _good(ca)
    config["tls"]["key_file"] = str(ca.leaf("other").key)
    code, lines = _run(tmp_path, config)
    assert code == 2
    assert "tls:" in lines[0] and "unusable TLS material" in lines[0]
    assert "PRIVATE KEY" not in "\n".join(lines)


@pytest.mark.parametrize(
    "args,expected",
    [
        (["-upstream", "db"], "-upstream 'db': expected NAME[.service|.query]:[ADDR:]PORT"),
        (["-log-level", "loud", "-service", "x"], "unknown log level 'loud'"),
        (["-listen", "127.0.0.1:1"], "-listen requires -service and -service-addr"),
        ([], "-service or -proxy-id must be specified"),
        (["-service"], "flag needs an argument: -service"),
        (["-register", "-service", "x"], "-register requires -service and -listen"),
    ],
)
def test_bad_flags_exit_2(args: list[str], expected: str) -> None:
    done = run_proxy_cli(*args)
    assert done.returncode == 2
    assert expected in done.stderr
