# SPDX-License-Identifier: MPL-2.0
"""One table of connection cases, run against both resolvers: they must agree (issue 16/14).

The proxy resolves its agent connection in ``meshkit.consul.settings.resolve``; the modules in
``module_utils/consul_api.Connection.from_params``. Both follow Consul's CLI (hashicorp/consul
api.NewClient and command/flags): the explicit token (``-token`` flag / ``token`` option) over
the contents of ``CONSUL_HTTP_TOKEN_FILE`` over ``CONSUL_HTTP_TOKEN``; an empty token file leaves
the variable in force; booleans parse as Go's strconv.ParseBool and a typo is an error; the
address forms host:port, http://, https:// (with a path prefix) and unix://.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ansible_collections.meshkit.connect.plugins.module_utils import consul_api
from meshkit.consul import settings

OK = "tok-file"  # placeholder in a case's env: the path of a file holding "from-file\n"
EMPTY = "empty-file"  # ...: the path of an empty file
MISSING = "missing-file"  # ...: a path that does not exist


@dataclass(frozen=True)
class Case:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    option: str | None = None  # the module's token option, the proxy's -token flag
    # (target, verify, token, token source) or the error message (both must say the same)
    want: tuple[str, bool, str | None, str] | None = None
    error: str | None = None


DEFAULT = "http://127.0.0.1:8500"
CASES = [
    # token precedence
    Case("nothing set", want=(DEFAULT, True, None, "none")),
    Case("variable", {"CONSUL_HTTP_TOKEN": "from-env"}, want=(DEFAULT, True, "from-env", "env")),
    Case("file", {"CONSUL_HTTP_TOKEN_FILE": OK}, want=(DEFAULT, True, "from-file", "file")),
    Case(
        "file over variable",
        {"CONSUL_HTTP_TOKEN": "from-env", "CONSUL_HTTP_TOKEN_FILE": OK},
        want=(DEFAULT, True, "from-file", "file"),
    ),
    Case(
        "option over file and variable",
        {"CONSUL_HTTP_TOKEN": "from-env", "CONSUL_HTTP_TOKEN_FILE": OK},
        option="from-option",
        want=(DEFAULT, True, "from-option", "option"),
    ),
    Case(
        "option: the file is not read",
        {"CONSUL_HTTP_TOKEN_FILE": MISSING},
        option="from-option",
        want=(DEFAULT, True, "from-option", "option"),
    ),
    Case(
        "empty file leaves the variable",
        {"CONSUL_HTTP_TOKEN": "from-env", "CONSUL_HTTP_TOKEN_FILE": EMPTY},
        want=(DEFAULT, True, "from-env", "env"),
    ),
    Case("empty file alone", {"CONSUL_HTTP_TOKEN_FILE": EMPTY}, want=(DEFAULT, True, None, "none")),
    Case(
        "missing file names the variable and the path",
        {"CONSUL_HTTP_TOKEN": "from-env", "CONSUL_HTTP_TOKEN_FILE": MISSING},
        error="cannot read the ACL token file '{missing}' (from CONSUL_HTTP_TOKEN_FILE): "
        "No such file or directory; fix the path or its permissions",
    ),
    # CONSUL_HTTP_ADDR forms
    Case(
        "host:port",
        {"CONSUL_HTTP_ADDR": "10.1.2.3:8500"},
        want=("http://10.1.2.3:8500", True, None, "none"),
    ),
    Case(
        "IPv6", {"CONSUL_HTTP_ADDR": "[::1]:8500"}, want=("http://[::1]:8500", True, None, "none")
    ),
    Case(
        "no port: the scheme's",
        {"CONSUL_HTTP_ADDR": "consul.local"},
        want=("http://consul.local", True, None, "none"),
    ),
    Case(
        "https://",
        {"CONSUL_HTTP_ADDR": "https://consul.local:8501"},
        want=("https://consul.local:8501", True, None, "none"),
    ),
    Case(
        "path prefix",
        {"CONSUL_HTTP_ADDR": "https://gw.example:443/consul/"},
        want=("https://gw.example:443/consul", True, None, "none"),
    ),
    Case(
        "unix socket",
        {"CONSUL_HTTP_ADDR": "unix:///run/consul/http.sock"},
        want=("unix:///run/consul/http.sock", True, None, "none"),
    ),
    Case(
        "unix socket with a token file",
        {"CONSUL_HTTP_ADDR": "unix:///run/consul/http.sock", "CONSUL_HTTP_TOKEN_FILE": OK},
        want=("unix:///run/consul/http.sock", True, "from-file", "file"),
    ),
    Case(
        "unknown protocol",
        {"CONSUL_HTTP_ADDR": "ftp://consul.local"},
        error="CONSUL_HTTP_ADDR='ftp://consul.local': unknown protocol scheme 'ftp'; "
        "use host:port, http://, https:// or unix://",
    ),
    Case(
        "unix without a path",
        {"CONSUL_HTTP_ADDR": "unix://"},
        error="CONSUL_HTTP_ADDR='unix://' names no socket path",
    ),
    # CONSUL_HTTP_SSL / CONSUL_HTTP_SSL_VERIFY forms
    Case(
        "SSL true",
        {"CONSUL_HTTP_ADDR": "127.0.0.1:8501", "CONSUL_HTTP_SSL": "true"},
        want=("https://127.0.0.1:8501", True, None, "none"),
    ),
    Case(
        "SSL 1",
        {"CONSUL_HTTP_ADDR": "127.0.0.1:8501", "CONSUL_HTTP_SSL": "1"},
        want=("https://127.0.0.1:8501", True, None, "none"),
    ),
    Case("SSL false", {"CONSUL_HTTP_SSL": "false"}, want=(DEFAULT, True, None, "none")),
    Case(
        "http:// never downgrades SSL=true",
        {"CONSUL_HTTP_ADDR": "http://127.0.0.1:8501", "CONSUL_HTTP_SSL": "True"},
        want=("https://127.0.0.1:8501", True, None, "none"),
    ),
    Case(
        "SSL_VERIFY false", {"CONSUL_HTTP_SSL_VERIFY": "false"}, want=(DEFAULT, False, None, "none")
    ),
    Case("SSL_VERIFY 0", {"CONSUL_HTTP_SSL_VERIFY": "0"}, want=(DEFAULT, False, None, "none")),
    *(
        Case(
            f"{var}={typo!r} is an error",
            {var: typo},
            error=f"{var}={typo!r} is not a boolean; use true or false "
            "(accepted: 1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False)",
        )
        for var in ("CONSUL_HTTP_SSL", "CONSUL_HTTP_SSL_VERIFY")
        for typo in ("ture", "yes", "on")
    ),
]


def _files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "token").write_text("from-file\n")
    (tmp_path / "empty").write_text("")
    return {
        OK: str(tmp_path / "token"),
        EMPTY: str(tmp_path / "empty"),
        MISSING: str(tmp_path / "no-such-token"),
    }


def _kind(source: str) -> str:
    for prefix, kind in (
        ("CONSUL_HTTP_TOKEN_FILE", "file"),
        ("CONSUL_HTTP_TOKEN", "env"),
        ("-token", "option"),
        (consul_api.TOKEN_FROM_OPTION, "option"),
    ):
        if source.startswith(prefix):
            return kind
    return "none"


def proxy_resolver(case: Case, env: dict[str, str]) -> tuple[str, bool, str | None, str]:
    s = settings.resolve(settings.HTTPFlags(token=case.option), env)
    return (s.describe(), s.verify, s.token or None, _kind(s.token_source))


def module_resolver(case: Case, env: dict[str, str]) -> tuple[str, bool, str | None, str]:
    params = {"token": case.option} if case.option else {}
    conn = consul_api.Connection.from_params(params, env)
    return (conn.describe(), conn.validate_certs, conn.token, _kind(conn.token_source))


RESOLVERS = {"proxy": (proxy_resolver, settings.SettingsError)}
RESOLVERS["modules"] = (module_resolver, consul_api.ConnectionSettingsError)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("side", sorted(RESOLVERS))
def test_one_table_both_resolvers(case: Case, side: str, tmp_path: Path) -> None:
    files = _files(tmp_path)
    env = {k: files.get(v, v) for k, v in case.env.items()}
    resolver, error_type = RESOLVERS[side]
    if case.error is not None:
        with pytest.raises(error_type) as raised:
            resolver(case, env)
        assert str(raised.value) == case.error.format(missing=files[MISSING])
    else:
        assert resolver(case, env) == case.want


def test_the_table_covers_every_source_and_form() -> None:
    """Guard the table itself: dropping a precedence row would let the two drift again."""
    names = {c.name for c in CASES}
    assert {"file over variable", "option over file and variable", "unix socket"} <= names
    assert sum(1 for c in CASES if c.error) >= 8
