# SPDX-License-Identifier: MPL-2.0
"""Connection settings: options first, then Consul's environment variables, then defaults."""

from __future__ import annotations

from pathlib import Path

from ansible_collections.meshkit.connect.plugins.module_utils.consul_api import (
    Connection,
    parse_consul_version,
)
from ansible_collections.meshkit.connect.plugins.module_utils.consul_lifecycle import (
    changed_parts,
)


def test_defaults_are_consuls_loopback_http_with_verification_on() -> None:
    conn = Connection.from_params({}, {})
    assert conn.base_url == "http://127.0.0.1:8500"  # Consul's api.DefaultConfig address
    assert conn.validate_certs and conn.token is None and conn.timeout == 10


def test_consul_http_addr_and_ssl_environment(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    env = {
        "CONSUL_HTTP_ADDR": "https://10.0.0.1:8501",
        "CONSUL_HTTP_SSL_VERIFY": "false",
        "CONSUL_CACERT": "/ca.pem",
        "CONSUL_CLIENT_CERT": "/c.pem",
        "CONSUL_CLIENT_KEY": "/k.pem",
        "CONSUL_HTTP_TOKEN_FILE": str(token_file),
    }
    conn = Connection.from_params({}, env)
    assert conn.base_url == "https://10.0.0.1:8501"
    assert not conn.validate_certs and conn.token == "s3cret"
    assert (conn.ca_path, conn.client_cert, conn.client_key) == ("/ca.pem", "/c.pem", "/k.pem")
    bare = Connection.from_params(
        {}, {"CONSUL_HTTP_ADDR": "127.0.0.1:8600", "CONSUL_HTTP_SSL": "1"}
    )
    assert bare.base_url == "https://127.0.0.1:8600"


def test_options_override_the_environment() -> None:
    env = {"CONSUL_HTTP_ADDR": "https://10.0.0.1:8501", "CONSUL_HTTP_TOKEN": "env-token"}
    params = {"host": "::1", "port": 8500, "scheme": "http", "token": "opt", "validate_certs": True}
    conn = Connection.from_params(params, env)
    assert conn.base_url == "http://[::1]:8500" and conn.token == "opt"


def test_parse_version() -> None:
    assert parse_consul_version("1.7.14") == (1, 7, 14)
    assert parse_consul_version("v1.9.0-beta1+ent") == (1, 9, 0)
    assert parse_consul_version("") == ()
    assert parse_consul_version("1.10.2") >= (1, 9)


def test_changed_parts_keeps_exactly_what_differs() -> None:
    before = {"a": 1, "b": {"c": [1], "d": 2}, "gone": 1}
    after = {"a": 1, "b": {"c": [1, 2], "d": 2}, "new": 3}
    assert changed_parts(before, after) == (
        {"b": {"c": [1]}, "gone": 1},
        {"b": {"c": [1, 2]}, "new": 3},
    )
