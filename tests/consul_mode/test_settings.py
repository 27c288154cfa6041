# SPDX-License-Identifier: MPL-2.0
"""Connection settings resolve exactly as Consul's CLI resolves them (`api.DefaultConfig`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshkit.consul.settings import SettingsError, resolve
from meshkit.flags import HTTPFlags


def test_defaults_are_consuls() -> None:
    s = resolve(HTTPFlags(), {})
    assert (s.scheme, s.host, s.unix_path, s.token, s.verify) == (
        "http",
        "127.0.0.1:8500",
        None,
        "",
        True,
    )
    assert s.base_url == "http://127.0.0.1:8500"


@pytest.mark.parametrize(
    ("addr", "scheme", "host", "prefix", "unix"),
    [
        ("10.1.2.3:8500", "http", "10.1.2.3:8500", "", None),
        ("http://127.0.0.1:8501", "http", "127.0.0.1:8501", "", None),
        ("https://consul.local:8501", "https", "consul.local:8501", "", None),
        ("https://gw.example:443/consul/", "https", "gw.example:443", "/consul", None),
        ("unix:///run/consul/http.sock", "http", "", "", "/run/consul/http.sock"),
    ],
)
def test_address_forms(addr: str, scheme: str, host: str, prefix: str, unix: str | None) -> None:
    s = resolve(HTTPFlags(), {"CONSUL_HTTP_ADDR": addr})
    assert (s.scheme, s.host, s.path_prefix, s.unix_path) == (scheme, host, prefix, unix)


def test_flag_beats_env_and_ssl_is_never_downgraded() -> None:
    env = {"CONSUL_HTTP_ADDR": "127.0.0.1:1", "CONSUL_HTTP_SSL": "true"}
    s = resolve(HTTPFlags(http_addr="http://127.0.0.2:8500"), env)
    assert (s.scheme, s.host) == ("https", "127.0.0.2:8500")


def test_bad_values_name_their_source() -> None:
    with pytest.raises(SettingsError, match=r"CONSUL_HTTP_ADDR.*ftp"):
        resolve(HTTPFlags(), {"CONSUL_HTTP_ADDR": "ftp://x:1"})
    with pytest.raises(SettingsError, match="CONSUL_HTTP_SSL_VERIFY"):
        resolve(HTTPFlags(), {"CONSUL_HTTP_SSL_VERIFY": "maybe"})
    with pytest.raises(SettingsError, match="-client-key"):
        resolve(HTTPFlags(client_cert="/x.pem"), {})


def test_ssl_verify_false_and_tls_files() -> None:
    env = {
        "CONSUL_HTTP_SSL_VERIFY": "0",
        "CONSUL_CACERT": "/ca.pem",
        "CONSUL_CAPATH": "/cas",
        "CONSUL_CLIENT_CERT": "/c.pem",
        "CONSUL_CLIENT_KEY": "/k.pem",
        "CONSUL_TLS_SERVER_NAME": "consul.test",
    }
    s = resolve(HTTPFlags(ca_file="/flag-ca.pem"), env)
    assert not s.verify
    assert (s.ca_file, s.ca_path, s.client_cert, s.client_key, s.tls_server_name) == (
        "/flag-ca.pem",
        "/cas",
        "/c.pem",
        "/k.pem",
        "consul.test",
    )


def _file(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def test_token_precedence(tmp_path: Path) -> None:
    flag_file = _file(tmp_path, "flag", "  from-flag-file\n")
    env_file = _file(tmp_path, "env", "from-env-file\n")
    env = {"CONSUL_HTTP_TOKEN": "from-env", "CONSUL_HTTP_TOKEN_FILE": env_file}
    assert resolve(HTTPFlags(token="f", token_file=flag_file), env).token == "from-flag-file"
    assert resolve(HTTPFlags(token="from-flag"), env).token == "from-flag"
    assert resolve(HTTPFlags(), env).token == "from-env-file"
    assert resolve(HTTPFlags(), {"CONSUL_HTTP_TOKEN": "from-env"}).token == "from-env"
    # an empty token file leaves the next source in force, as in Consul
    empty = _file(tmp_path, "empty", "\n")
    assert resolve(HTTPFlags(token="t", token_file=empty), {}).token == "t"


def test_token_never_in_repr_and_missing_file_is_clear(tmp_path: Path) -> None:
    s = resolve(HTTPFlags(token="s3cr3t-token"), {})
    assert "s3cr3t" not in repr(s)
    assert s.token_source == "-token"
    with pytest.raises(SettingsError, match=r"token file .*CONSUL_HTTP_TOKEN_FILE"):
        resolve(HTTPFlags(), {"CONSUL_HTTP_TOKEN_FILE": str(tmp_path / "nope")})


def test_command_line_keeps_consuls_precedence(tmp_path: Path) -> None:
    """The command line holds flags only, so `-token` still beats CONSUL_HTTP_TOKEN_FILE (as in
    Consul's CLI) and the environment's token is used when no flag is given."""
    from meshkit import flags
    from meshkit.consul.mode import settings_from

    env_file = _file(tmp_path, "env", "from-env-file\n")
    env = {"CONSUL_HTTP_TOKEN_FILE": env_file, "CONSUL_HTTP_ADDR": "unix:///run/consul.sock"}
    cmd = flags.parse(["-proxy-id", "p", "-token", "from-flag"], env=env)
    s = settings_from(cmd, env)
    assert (s.token, s.token_source, s.unix_path) == ("from-flag", "-token", "/run/consul.sock")
    assert cmd.http == HTTPFlags(token="from-flag")
    cmd = flags.parse(["-proxy-id", "p"], env=env)
    s = settings_from(cmd, env)
    assert (s.token, s.token_source) == ("from-env-file", "CONSUL_HTTP_TOKEN_FILE")
    env = {"CONSUL_HTTP_TOKEN": "env-token"}
    s = settings_from(flags.parse(["-proxy-id", "p"], env=env), env)
    assert (s.token, s.token_source) == ("env-token", "CONSUL_HTTP_TOKEN")
    # a flag whose value happens to equal the variable is still a flag
    env = {"CONSUL_HTTP_TOKEN": "same", "CONSUL_HTTP_TOKEN_FILE": env_file}
    s = settings_from(flags.parse(["-proxy-id", "p", "-token", "same"], env=env), env)
    assert (s.token, s.token_source) == ("same", "-token")
    cmd = flags.parse(["-proxy-id", "p", "-http-addr", "https://127.0.0.1:8501"], env=env)
    assert settings_from(cmd, env).base_url == "https://127.0.0.1:8501"
